from __future__ import annotations

from django.contrib import admin


class FanoutAdminSite(admin.AdminSite):
    site_header = "Fanout administration"
    site_title = "Fanout admin"
    index_title = "Reports, TPAs and caches"
