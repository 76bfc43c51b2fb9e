import pytest
from django.urls import reverse

from healthagent import health


@pytest.mark.django_db
def test_health_tells_the_public_only_ok_or_unavailable(client, monkeypatch):
    assert client.get(reverse("health")).json() == {"status": "ok"}
    monkeypatch.setattr(health, "_check_broker", lambda: (_ for _ in ()).throw(ConnectionError("redis://secret-host")))
    response = client.get(reverse("health"))
    assert response.status_code == 503 and response.json() == {"status": "unavailable"}


@pytest.mark.django_db
def test_health_reports_every_service_to_admins(client, settings, admin_user):
    client.force_login(admin_user)
    response = client.get(reverse("health"))
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["mode"] == ("embedded" if settings.EMBEDDED else "services")
    assert body["database"]["ok"] and body["broker"]["ok"] and body["channel_layer"]["ok"]


@pytest.mark.django_db
def test_health_is_503_and_names_the_failure_to_admins_when_a_service_is_down(client, monkeypatch, admin_user):
    client.force_login(admin_user)

    def broken_broker():
        raise ConnectionError("connection refused")

    monkeypatch.setattr(health, "_check_broker", broken_broker)
    response = client.get(reverse("health"))
    assert response.status_code == 503
    assert response.json()["broker"] == {
        "ok": False,
        "error": "ConnectionError: connection refused",
        "latency_ms": response.json()["broker"]["latency_ms"],
    }
    assert response.json()["database"]["ok"] is True


@pytest.mark.django_db
def test_system_page_shows_services_to_admins(client, admin_user):
    client.force_login(admin_user)
    page = client.get(reverse("system_status")).content.decode()
    assert "Database" in page and "Broker" in page and "Channel layer" in page
    assert "Ping the workers" in page
