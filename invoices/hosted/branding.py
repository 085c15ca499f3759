"""The seller's branding on the invoice page: name, logo or icon, accent colour, address and
support address (invoices.Branding, edited in the admin).

The accent colour is the brand's; the page keeps its text readable whatever it is:
button text is white or near-black, whichever contrasts more (and the buttons fall
back to a readable blue when neither reaches WCAG's 4.5:1 for text), and links fall
back to that blue when the accent is too light on white.
"""

from dataclasses import dataclass

from django.urls import reverse

from ..models import Branding

WHITE, INK, READABLE_BLUE = "#ffffff", "#1f2328", "#0b57d0"
TEXT_CONTRAST = 4.5


@dataclass(frozen=True)
class PageBranding:
    name: str
    icon_url: str
    logo_url: str  # shown in place of the icon and name when set
    accent: str
    accent_ink: str  # text on the accent
    link: str  # links on white
    address_lines: list[str]
    support_email: str


def page_branding(branding: Branding) -> PageBranding:
    accent = branding.accent_colour or READABLE_BLUE
    ink = max((WHITE, INK), key=lambda ink: contrast_ratio(accent, ink))
    if contrast_ratio(accent, ink) < TEXT_CONTRAST:
        accent, ink = READABLE_BLUE, WHITE
    return PageBranding(
        name=branding.company_name,
        icon_url=icon_url(branding),
        logo_url=file_url(branding, "logo"),
        accent=accent,
        accent_ink=ink,
        link=accent if contrast_ratio(accent, WHITE) >= TEXT_CONTRAST else READABLE_BLUE,
        address_lines=branding.address_lines(),
        support_email=branding.support_email,
    )


def icon_url(branding: Branding) -> str:
    return file_url(branding, "icon")


def file_url(branding: Branding, kind: str) -> str:
    """The URL of the icon or logo, changing with the file so that browsers may cache it
    for long; "" when none is set."""
    file = getattr(branding, kind)
    if not file:
        return ""
    return f"{reverse(f'hosted:branding_{kind}')}?v={file.name.rsplit('/', 1)[-1]}"


def relative_luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(first: str, second: str) -> float:
    light, dark = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)
