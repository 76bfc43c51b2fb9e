import signal
import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Serve the site with daphne and, in embedded mode, one Celery worker beside it "
        "(both queues, one process), stopping both together."
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
            worker_log = open(log_dir / "worker.log", "ab")
            worker_command = [sys.executable, "-m", "celery", "-A", "healthagent", "worker",
                              "-Q", "cpu,gpu", "-c", "1", "--loglevel", "INFO", "-n", "embedded@%h"]
            children.append(subprocess.Popen(worker_command, stdout=worker_log, stderr=subprocess.STDOUT))
            self.stdout.write(f"Worker started (queues cpu, gpu); its log is {log_dir / 'worker.log'}")
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
