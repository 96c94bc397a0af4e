"""The merchant site's forms: they check input; services make the changes."""

from django import forms
from django.core.exceptions import ValidationError

from checkout.models import CheckoutInvoice, Merchant, Product

from .selectors import InvoiceFilter

STATUS_CHOICES = [("", "Any status"), *CheckoutInvoice.Status.choices]


class InvoiceFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES)
    created_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    reference = forms.CharField(required=False, max_length=128)
    email = forms.CharField(required=False, max_length=254)

    def __init__(self, data=None):
        # The URL says "from" and "to" (what a person types); the fields need other names.
        if data is not None:
            data = data.copy()
            for short, name in (("from", "created_from"), ("to", "created_to")):
                if short in data:
                    data[name] = data[short]
        super().__init__(data, prefix=None)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("created_from"), cleaned.get("created_to")
        if start and end and start > end:
            raise ValidationError("The From date is after the To date.")
        return cleaned

    def wanted(self) -> InvoiceFilter:
        data = self.cleaned_data
        return InvoiceFilter(
            q=data.get("q") or "",
            status=data.get("status") or "",
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
            reference=data.get("reference") or "",
            email=data.get("email") or "",
        )


def url_field(label: str, help_text: str = "") -> forms.URLField:
    return forms.URLField(
        required=False, max_length=2000, assume_scheme="https", label=label, help_text=help_text
    )


class ProductForm(forms.ModelForm):
    image_url = url_field("Image URL")

    class Meta:
        model = Product
        fields = ["name", "description", "price", "currency", "image_url", "active"]
        labels = {"image_url": "Image URL"}
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def clean_price(self):
        price = self.cleaned_data["price"]
        if price is not None and price <= 0:
            raise ValidationError("The price must be more than 0.")
        return price

    def clean(self):
        cleaned = super().clean()
        price, currency = cleaned.get("price"), cleaned.get("currency")
        if price is not None and currency == "SAT" and price != price.to_integral_value():
            self.add_error("price", "A price in SAT is a whole number of sats.")
        return cleaned

    def clean_image_url(self):
        url = self.cleaned_data["image_url"]
        if url and not url.lower().startswith(("https://", "http://")):
            raise ValidationError("An image URL starts with https://.")
        return url


class RefundForm(forms.Form):
    amount_sats = forms.IntegerField(
        required=False,
        min_value=1,
        label="Amount (sats)",
        help_text="Leave empty to refund all that is left.",
    )
    reason = forms.CharField(required=False, max_length=500)
    refund_address = forms.CharField(
        required=False,
        max_length=2000,
        label="Lightning address of the buyer",
        help_text="Paid at once. Without it, the buyer gets a refund link to claim.",
    )


class SettingsForm(forms.ModelForm):
    logo_url = url_field("Logo URL", "Shown at the top of your checkout pages.")
    website_url = url_field("Shop website", "Buyers whose invoice expired are sent back here.")
    default_currency = forms.ChoiceField(choices=Product.Currency.choices)
    default_expiry_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=60 * 24 * 7,
        label="Default expiry (minutes)",
        help_text="How long a new checkout stays payable. Empty: 15 minutes.",
    )

    class Meta:
        model = Merchant
        fields = [
            "name",
            "logo_url",
            "brand_colour",
            "website_url",
            "support_email",
            "email",
            "default_currency",
            "notify_each_sale",
            "notify_daily_summary",
        ]
        labels = {
            "name": "Store name",
            "logo_url": "Logo URL",
            "website_url": "Shop website",
            "email": "Notification email",
            "notify_each_sale": "Email me on each sale",
            "notify_daily_summary": "Email me a daily summary",
        }
        widgets = {
            "brand_colour": forms.TextInput(
                attrs={"placeholder": "#f7931a", "pattern": "#[0-9a-fA-F]{6}", "size": 8}
            )
        }
        help_texts = {"brand_colour": "A hex colour for the buttons of your checkout pages."}

    def __init__(self, *args, instance=None, **kwargs):
        super().__init__(*args, instance=instance, **kwargs)
        if instance is not None and instance.default_expiry_seconds:
            self.initial["default_expiry_minutes"] = instance.default_expiry_seconds // 60

    def clean(self):
        cleaned = super().clean()
        wants_mail = cleaned.get("notify_each_sale") or cleaned.get("notify_daily_summary")
        if wants_mail and not cleaned.get("email"):
            self.add_error("email", "Give an email address to be notified.")
        return cleaned

    def save(self, commit=True):
        merchant = super().save(commit=False)
        minutes = self.cleaned_data.get("default_expiry_minutes")
        merchant.default_expiry_seconds = minutes * 60 if minutes else None
        if commit:
            merchant.save()
        return merchant
