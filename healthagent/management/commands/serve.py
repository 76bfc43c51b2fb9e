import signal
import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Serve the site with daphne and one Celery worker per queue (cpu, gpu) beside it, "
        "stopping them together."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="Serve only; workers run elsewhere.")

    def handle(self, *args, host, port, no_worker, **options):
        log_dir = settings.VAR_DIR / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        children = []
        if not no_worker:
            # One worker per queue, as in production: a long language-model generation on the gpu
            # queue never holds up a training run or other work on the cpu queue.
            for queue in ("cpu", "gpu"):
                log = open(log_dir / f"worker-{queue}.log", "ab")
                command = [sys.executable, "-m", "celery", "-A", "healthagent", "worker", "-Q", queue, "-c", "1",
                           "--loglevel", "INFO", "-n", f"{queue}@%h"]
                children.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
                self.stdout.write(f"Worker for the {queue} queue started; its log is {log_dir / f'worker-{queue}.log'}")
        server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", host, "-p", str(port),
                                   "healthagent.asgi:application"])
        children.append(server)
        self.stdout.write(self.style.SUCCESS(f"Serving on http://{host}:{port}/ (Ctrl-C stops)"))

        def stop(*_):
            for child in children:
                if child.poll() is None:
                    child.terminate()

        signal.signal(signal.SIGTERM, stop)
        try:
            server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            stop()
            for child in children:
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()
