"""TLS contexts for SIP over TLS (RFC 3261 §26.3, RFC 5630): the listener's certificate and
key, and the trust used to verify servers the bridge calls (a trunk over TLS).

A missing or broken file is a `TlsConfigError` naming the key and the file, raised at start-up:
a bridge that was told to speak TLS never starts without it."""

from __future__ import annotations

import ssl

from bridge.config import ConfigError, SipConfig


class TlsConfigError(ConfigError):
    """The TLS files cannot be used; the message names the key and the file."""


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The listener's context: TLS 1.2 or later, the configured certificate chain and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise TlsConfigError(f"sip.tls_cert/tls_key: no such file {exc.filename}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(
            f"sip.tls_cert/tls_key: cannot use {cert} with {key}: {exc}"
        ) from None
    return context


def check_files(sip: SipConfig) -> None:
    """Load what `sip` names once, so `confbridge serve` and `check-config` refuse bad files."""
    if sip.tls_cert:
        server_context(sip.tls_cert, sip.tls_key)
    if sip.tls_ca:
        client_context(sip.tls_ca, sip.tls_verify)


def client_context(ca: str, verify: bool) -> ssl.SSLContext:
    """For calls out: verify the server's certificate against `ca` (a PEM file; "" = the
    system's trust store) and its name against the address dialled, unless `verify` is off."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca:
        try:
            context.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as exc:
            raise TlsConfigError(f"sip.tls_ca: cannot read {ca}: {exc}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
