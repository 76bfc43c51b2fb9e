"""The WSGI entry point gives a view only the request's own environ, whatever the server copied into it."""

from healthagent.wsgi import without_process_environment


def test_the_process_environment_never_reaches_a_request():
    """granian starts each request's environ from the process's environment (secrets included): they are taken out,
    and the request's own keys, headers and WSGI entries stay."""
    process = {"SECRET_KEY": "s3cret", "DATABASE_URL": "postgres://u:pw@db/x", "HTTP_X_ROLE": "admin", "PATH": "/bin"}
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return [b""]

    wrapped = without_process_environment(app, process)
    request = {
        **process,
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/evaluation/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "REMOTE_ADDR": "10.0.0.7",
        "HTTP_HOST": "evaluation.example.org",
        "HTTP_COOKIE": "sessionid=abc",
        "wsgi.url_scheme": "https",
    }
    assert wrapped(request, lambda *args: None) == [b""]
    assert not {"SECRET_KEY", "DATABASE_URL", "PATH", "HTTP_X_ROLE"} & set(seen)  # HTTP_X_ROLE: not sent by the client
    assert seen["REMOTE_ADDR"] == "10.0.0.7" and seen["HTTP_COOKIE"] == "sessionid=abc"
    assert seen["wsgi.url_scheme"] == "https" and seen["PATH_INFO"] == "/evaluation/"

    sent = {**request, "HTTP_X_ROLE": "reader"}  # a header the client did send keeps its value
    seen.clear()
    wrapped(sent, lambda *args: None)
    assert seen["HTTP_X_ROLE"] == "reader"


def test_the_sites_application_is_wrapped():
    import healthagent.wsgi

    assert healthagent.wsgi.application.__qualname__ == "without_process_environment.<locals>.application"
