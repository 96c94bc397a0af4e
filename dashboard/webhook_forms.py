"""The webhook endpoint form of the merchant site.

It checks nothing of its own: the URL and the events go through the webhooks API's own
fields (`WebhookUrlField`: a valid http(s) URL that passes the SSRF guard;
`EventTypesField`: known event types or "*"), so the site and the API accept the same.
"""

from django import forms
from django.core.exceptions import ValidationError
from rest_framework import serializers

from webhooks import services
from webhooks.serializers import EventTypesField, WebhookUrlField

ALL_EVENTS = "*"


def _api_rule(field, value):
    """Run an API field's validation; its errors become the form field's."""
    try:
        return field.run_validation(value)
    except serializers.ValidationError as exc:
        detail = exc.detail if isinstance(exc.detail, list) else [exc.detail]
        raise ValidationError([str(message) for message in detail]) from None


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="URL",
        max_length=2000,
        widget=forms.URLInput(attrs={"placeholder": "https://shop.example/zapgate-webhook"}),
        help_text="Zapgate POSTs each event here, signed.",
    )
    description = forms.CharField(label="Description", max_length=500, required=False)
    events = forms.MultipleChoiceField(
        label="Events",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one event, or all events."},
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Read now: apps add their event types as they start.
        self.fields["events"].choices = [
            (ALL_EVENTS, "All events"),
            *((name, name) for name in sorted(services.EVENT_TYPES)),
        ]

    def event_choices(self):
        """Each event checkbox with what the event means, for the template."""
        descriptions = {ALL_EVENTS: "Every event, also those added later.", **services.EVENT_TYPES}
        return [(choice, descriptions.get(choice.data["value"], "")) for choice in self["events"]]

    @classmethod
    def initial_of(cls, endpoint) -> dict:
        return {
            "url": endpoint.url,
            "description": endpoint.description,
            "events": list(endpoint.events),
            "enabled": endpoint.enabled,
        }

    def clean_url(self):
        return _api_rule(WebhookUrlField(), self.cleaned_data["url"].strip())

    def clean_events(self):
        return _api_rule(EventTypesField(), self.cleaned_data["events"])
