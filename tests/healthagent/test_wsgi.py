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

    def wrapped(application) -> list[str]:
        return [
            cell.cell_contents.__qualname__
            for cell in application.__closure__ or ()
            if callable(cell.cell_contents) and hasattr(cell.cell_contents, "__closure__")
        ]

    assert wrapped(healthagent.wsgi.application) == ["serve_chart_links.<locals>.application"]
    links = next(
        cell.cell_contents for cell in healthagent.wsgi.application.__closure__ if callable(cell.cell_contents)
    )
    assert "one_piece.<locals>.application" in wrapped(links)


def test_a_body_in_memory_goes_to_the_server_in_one_piece_and_the_request_is_ended():
    """A page (an HttpResponse) is returned as a list of its one piece, after Django's request_finished; a streaming
    response is returned as it is, for the server to walk and close."""
    from django.core.signals import request_finished
    from django.db import close_old_connections
    from django.http import HttpResponse, StreamingHttpResponse

    from healthagent.wsgi import one_piece

    finished = []

    def on_finished(**kwargs):
        finished.append(True)

    request_finished.disconnect(close_old_connections)  # no database here (the test client does the same)
    request_finished.connect(on_finished)
    try:
        page = HttpResponse()
        page.write(b"<p>a</p>")
        page.write(b"<p>b</p>")
        assert one_piece(lambda environ, start_response: page)({}, None) == [b"<p>a</p><p>b</p>"]
        assert finished == [True]

        stream = StreamingHttpResponse(iter([b"x", b"y"]))
        assert one_piece(lambda environ, start_response: stream)({}, None) is stream
        assert finished == [True]  # closed by the server once sent, not here
        stream.close()

        def failing(**kwargs):
            raise RuntimeError("a receiver that fails")

        request_finished.connect(failing)
        try:  # a receiver that fails after the page was made: the page stands, as it did when a server closed it
            assert one_piece(lambda environ, start_response: HttpResponse(b"ok"))({}, None) == [b"ok"]
        finally:
            request_finished.disconnect(failing)
    finally:
        request_finished.disconnect(on_finished)
        request_finished.connect(close_old_connections)
