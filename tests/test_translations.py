"""Simplified Chinese is the default language and its catalog is complete; English is available."""

from __future__ import annotations

from pathlib import Path

import polib
import pytest
from django.urls import reverse
from django.utils import translation

LOCALE = Path(__file__).resolve().parent.parent / "locale"
ZH_PO = LOCALE / "zh_Hans" / "LC_MESSAGES" / "django.po"


def test_every_string_has_a_chinese_translation():
    catalog = polib.pofile(str(ZH_PO))
    missing = [entry.msgid for entry in catalog if not entry.obsolete and not entry.translated()]
    assert missing == []


def test_the_compiled_catalog_matches_the_source_catalog():
    source = polib.pofile(str(ZH_PO))
    compiled = polib.mofile(str(ZH_PO.with_suffix(".mo")))
    compiled_strings = {(e.msgctxt, e.msgid): (e.msgstr, tuple(sorted(e.msgstr_plural.items()))) for e in compiled}
    for entry in source.translated_entries():
        key = (entry.msgctxt, entry.msgid)
        assert key in compiled_strings, f"not compiled: {entry.msgid!r} (run manage.py compilemessages)"
        assert compiled_strings[key] == (entry.msgstr, tuple(sorted(entry.msgstr_plural.items()))), entry.msgid


@pytest.mark.django_db
def test_the_admin_speaks_chinese_by_default_and_english_on_request(client):
    chinese = client.get(reverse("admin:login"))
    english = client.get(reverse("admin:login"), headers={"accept-language": "en"})

    assert chinese.headers["Content-Language"] == "zh-hans"
    assert "登录" in chinese.content.decode()
    assert english.headers["Content-Language"] == "en"
    assert "Log in" in english.content.decode()


def test_the_project_strings_are_translated_at_run_time():
    with translation.override("zh-hans"):
        from distributors.models import Distributor

        assert str(Distributor._meta.verbose_name) == "分销商"


@pytest.mark.django_db
def test_the_menu_names_every_third_party_app_and_model_in_chinese(client):
    from tests.factories import make_user, sign_in, verify_second_factor

    root = make_user("menu-root", is_superuser=True)
    sign_in(client, root)
    verify_second_factor(client, root)

    index = client.get(reverse("admin:index")).content.decode()

    for name in ("审计历史", "审计日志", "登录锁定", "登录失败尝试", "登录记录", "后台任务", "身份验证器（TOTP）",
                 "身份验证器应用", "备用验证码"):
        assert name in index, name
    for raw in ("Pghistory", "PGHISTORY", "Axes", "Access attempts", "Access logs", "Procrastinate",
                "Otp_Totp", "TOTP devices", "Otp_Static", "Static devices", ">Events<"):
        assert raw not in index, raw
