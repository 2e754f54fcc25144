"""Jobs of the removed one-order task orders.submit_order become orders.submit_orders jobs.

Such a job may still be waiting (deferred before orders were submitted in groups, or waiting to
be retried after an unreachable upstream): a worker without the old task would fail it and leave
its order QUEUED, its price held, with nothing to send it. The current task submits a list of
orders the same way, on the same queue with the same retries, so the job keeps its id, attempts
and schedule and only its task and arguments change. A job still marked as running is moved too:
its worker has its arguments already, and if it stopped, the stalled-job recovery queues it
again under a name that exists. Finished jobs keep the name they ran under.

Nothing is moved back: the code before this migration has both tasks.
"""

from django.db import migrations

HAND_OVER_SQL = """
UPDATE procrastinate_jobs
   SET task_name = 'orders.submit_orders',
       args = jsonb_build_object('order_ids', jsonb_build_array(args -> 'order_id'))
 WHERE task_name = 'orders.submit_order'
   AND status IN ('todo', 'doing')
   AND args ? 'order_id'
"""


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0003_pending_batch_upload"),
        ("procrastinate", "0041_post_retry_failed_job"),
    ]

    operations = [migrations.RunSQL(HAND_OVER_SQL, migrations.RunSQL.noop)]
