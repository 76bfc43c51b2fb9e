from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from healthagent import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.SiteLoginView.as_view(), name="login"),
    # Single sign-on (healthagent/sso.py); 404 unless configured. The names are mozilla-django-oidc's.
    path("sso/login/", views.sso_login, name="oidc_authentication_init"),
    path("sso/callback/", views.sso_callback, name="oidc_authentication_callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("health/", views.health, name="health"),
    path("system/", views.system_status, name="system_status"),
    path("system/audit/", views.audit_log, name="audit_log"),
    path("notifications/", views.notifications, name="notifications"),
    path("account/", views.account, name="account"),
    path("invitations/<str:token>/", views.invitation_accept_view, name="invitation_accept"),
    path("account/tokens/", views.account_token_create, name="account_token_create"),
    path("account/tokens/<str:token_key>/revoke/", views.account_token_revoke, name="account_token_revoke"),
    path("cohorts/", include("healthagent.cohort.urls")),
    path("evaluation/", include("evaluation.urls")),
    path("modeling/", include("modeling.urls")),
    path("api/", include("evaluation.api_urls")),
    path("django-admin/", admin.site.urls),
]

# A 404 under /api/ is JSON like every other API answer; elsewhere, the site's 404 page.
handler404 = views.not_found
