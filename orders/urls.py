from django.urls import path

from orders import views

app_name = "callbacks"

urlpatterns = [
    path("exchange/", views.exchange_callback, name="exchange"),
    path("bst17/", views.bst17_callback, name="bst17"),
]
