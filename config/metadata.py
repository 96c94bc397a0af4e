"""What OPTIONS answers on the API.

DRF's SimpleMetadata describes the fields of a view's serializer under `actions`, building
it with `view.get_serializer()`, which fails (a 500) on views that have no serializer class.
The OpenAPI document at /openapi.json is the description of every operation, so OPTIONS
answers only the view's name, description and media types.
"""

from rest_framework.metadata import SimpleMetadata


class Metadata(SimpleMetadata):
    def determine_actions(self, request, view):
        return {}
