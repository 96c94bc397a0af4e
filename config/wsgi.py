import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# A web server process sends the webhooks of its requests itself (webhooks.dispatch): a
# broker message per invoice created cost more than the rest of the request.
from webhooks import dispatch  # noqa: E402

dispatch.send_in_process()
