import json
import logging

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from odoo import SUPERUSER_ID, http
from odoo.exceptions import UserError
from odoo.http import request

from ..wa_cloud.events import ordering_keys
from ..wa_cloud.webhook import SignatureError, verify_signature, verify_subscription

_logger = logging.getLogger(__name__)

MAX_BYTES_PARAM = "whatsapp_business.webhook_max_bytes"
DEFAULT_MAX_BYTES = 3 * 1024 * 1024
READ_CHUNK = 64 * 1024
CHUNKED_BODY_KEY = "whatsapp_business.chunked_body"


def _max_bytes(env):
    return int(
        env["ir.config_parameter"].sudo().get_param(MAX_BYTES_PARAM, DEFAULT_MAX_BYTES)
    )


def _route_max_bytes(_controller):
    # Read before the body: werkzeug stops reading past it, chunked bodies too.
    return _max_bytes(request.env)


def _read_at_most(httprequest, max_bytes):
    """The body, read by chunks and refused as soon as it passes ``max_bytes``.

    A chunked body has no Content-Length: without this, it would be read to
    Odoo's own limit first (werkzeug before 3.0 ignores max_content_length for
    such streams).
    """
    # Odoo's request wrapper hides werkzeug's stream; the wrapped request has it.
    wrapped = getattr(httprequest, "_HTTPRequest__wrapped", None)
    if wrapped is None or httprequest.content_length is not None:
        # A declared length was checked by the caller: werkzeug reads that much.
        raw = httprequest.get_data(cache=True)
        if len(raw) > max_bytes:
            raise RequestEntityTooLarge()
        return raw
    # Odoo runs the route again after a serialization conflict: the stream is
    # read by then, the body kept with the request is not.
    raw = httprequest.environ.get(CHUNKED_BODY_KEY)
    if raw is not None:
        return raw
    stream = wrapped.stream
    chunks, size = [], 0
    while True:
        chunk = stream.read(min(READ_CHUNK, max_bytes + 1 - size))
        if not chunk:
            raw = httprequest.environ[CHUNKED_BODY_KEY] = b"".join(chunks)
            return raw
        size += len(chunk)
        if size > max_bytes:
            raise RequestEntityTooLarge()
        chunks.append(chunk)


def _plain(text, status):
    return Response(text, status=status, content_type="text/plain; charset=utf-8")


class WhatsAppWebhookController(http.Controller):
    @http.route(
        "/whatsapp/webhook/<string:key>",
        type="http",
        auth="public",
        methods=["GET"],
        csrf=False,
        save_session=False,
    )
    def whatsapp_webhook_verify(self, key, **_params):
        """Meta's subscription handshake: echo the challenge for the right token."""
        account = request.env["whatsapp.account"].sudo()._find_by_webhook_key(key)
        expected = account.verify_token if account else None
        challenge = verify_subscription(request.httprequest.args, expected)
        if challenge is None:
            _logger.info(
                "WhatsApp webhook verification refused (account %s)", account.id
            )
            return _plain("Forbidden", 403)
        _logger.info("WhatsApp webhook verified for account %s", account.id)
        return _plain(challenge, 200)

    @http.route(
        "/whatsapp/webhook/<string:key>",
        type="http",
        # Meta is no user: no public user to look up, no session, no website.
        auth="none",
        # auth="none" routes start in a read-only transaction (a replica's, when
        # there is one): this one writes, so it asks for a read/write one.
        readonly=False,
        methods=["POST"],
        csrf=False,
        save_session=False,
        max_content_length=_route_max_bytes,
    )
    def whatsapp_webhook_receive(self, key, **_params):
        """Verify the raw bytes and store them durably; processing follows at once.

        Meta retries anything but a 200, so a 200 is sent only once the body is
        in the inbox: the response leaves after Odoo committed the transaction.
        """
        env = request.env(user=SUPERUSER_ID)
        Account = env["whatsapp.account"]
        route_data = Account._webhook_route_data(key)
        if not route_data:
            return _plain("Not Found", 404)
        account_id, app_secret_encrypted = route_data
        account = Account.browse(account_id)
        max_bytes = _max_bytes(env)
        httprequest = request.httprequest
        if (httprequest.content_length or 0) > max_bytes:
            return _plain("Payload Too Large", 413)
        try:
            raw = _read_at_most(httprequest, max_bytes)
        except RequestEntityTooLarge:
            return _plain("Payload Too Large", 413)
        try:
            app_secret = account._decrypt_secret(app_secret_encrypted)
        except UserError:
            # The key is missing or wrong on this server: let Meta retry later.
            _logger.error(
                "WhatsApp account %s: app secret cannot be decrypted", account.id
            )
            return _plain("Service Unavailable", 503)
        try:
            verify_signature(
                raw, httprequest.headers.get("X-Hub-Signature-256"), app_secret
            )
        except SignatureError as exc:
            env["whatsapp.webhook.rejection"]._record(account)
            _logger.warning(
                "WhatsApp webhook for account %s refused: %s", account.id, exc
            )
            return _plain("Forbidden", 403)
        try:
            body = json.loads(raw)
        except ValueError:
            return _plain("Bad Request: body is not JSON", 400)
        except RecursionError:
            return _plain("Bad Request: body is nested too deeply", 400)
        if not isinstance(body, dict):
            return _plain("Bad Request: body is not a JSON object", 400)
        # Stored, noted on the account and the processing cron woken (it runs at
        # once: Meta wants a fast answer), in one statement.
        event = env["whatsapp.webhook.event"]._receive(
            account, raw, ordering_keys(body)
        )
        if event is None:
            _logger.info("WhatsApp webhook for account %s: repeated body", account.id)
        return _plain("OK", 200)
