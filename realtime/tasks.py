from celery import shared_task

from . import push


@shared_task(ignore_result=True)
def prune_push_messages():
    """Every minute (beat): the embedded push transport's old messages go."""
    if push.embedded():
        push.prune()
