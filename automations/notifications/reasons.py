"""Why a payment failed, in plain words for the customer, in their language. Gateways
give codes (Stripe's decline codes) and English messages meant for developers."""

REASONS = {
    "insufficient_funds": {
        "en": "The card has insufficient funds.",
        "fr": "Les fonds de la carte sont insuffisants.",
        "pt-BR": "O cartão não tem saldo suficiente.",
    },
    "expired_card": {
        "en": "The card has expired.",
        "fr": "La carte a expiré.",
        "pt-BR": "O cartão expirou.",
    },
    "incorrect_number": {
        "en": "The card number is incorrect.",
        "fr": "Le numéro de carte est incorrect.",
        "pt-BR": "O número do cartão está incorreto.",
    },
    "incorrect_cvc": {
        "en": "The card's security code is incorrect.",
        "fr": "Le cryptogramme de la carte est incorrect.",
        "pt-BR": "O código de segurança do cartão está incorreto.",
    },
    "lost_card": {
        "en": "The card was reported lost.",
        "fr": "La carte a été déclarée perdue.",
        "pt-BR": "O cartão foi informado como perdido.",
    },
    "stolen_card": {
        "en": "The card was reported stolen.",
        "fr": "La carte a été déclarée volée.",
        "pt-BR": "O cartão foi informado como roubado.",
    },
    "pickup_card": {
        "en": "The bank asked us not to use this card.",
        "fr": "La banque a demandé de ne plus utiliser cette carte.",
        "pt-BR": "O banco pediu para não usar mais este cartão.",
    },
    "authentication_required": {
        "en": "The bank requires you to confirm the payment.",
        "fr": "La banque demande que vous confirmiez le paiement.",
        "pt-BR": "O banco exige que você confirme o pagamento.",
    },
    "card_velocity_exceeded": {
        "en": "The card's spending limit was reached.",
        "fr": "Le plafond de dépenses de la carte est atteint.",
        "pt-BR": "O limite de gastos do cartão foi atingido.",
    },
    "processing_error": {
        "en": "The bank could not process the payment.",
        "fr": "La banque n'a pas pu traiter le paiement.",
        "pt-BR": "O banco não conseguiu processar o pagamento.",
    },
    "revocation_of_authorization": {
        "en": "The authorization to charge this account was withdrawn.",
        "fr": "L'autorisation de prélever ce compte a été retirée.",
        "pt-BR": "A autorização para cobrar esta conta foi revogada.",
    },
}
GENERIC = {
    "en": "The bank declined the payment.",
    "fr": "La banque a refusé le paiement.",
    "pt-BR": "O banco recusou o pagamento.",
}
ALIASES = {"revocation_of_all_authorizations": "revocation_of_authorization"}


def decline_reason(code: str, message: str, locale: str) -> str:
    """Plain words for a decline code; the gateway's own message only in English, and
    a generic sentence when the code is unknown."""
    texts = REASONS.get(ALIASES.get(code, code))
    if texts is not None:
        return texts.get(locale, texts["en"])
    if message and locale == "en":
        return message
    return GENERIC.get(locale, GENERIC["en"])
