"""A real SMTP server for the mail tests (aiosmtpd from PyPI, in .venv by scripts/python-tools).

Listens on 127.0.0.1 (a free port, printed as `PORT <n>` once it accepts connections) and
appends one JSON line per accepted message to the record file: envelope sender and
recipients, Message-ID, Subject, From, the text body. Like a real server it may refuse:
- RCPT TO a local part starting with `reject`: 550 5.1.1 (a permanent refusal);
- DATA of a message with a recipient whose local part starts with `flaky`: 451 4.3.0 the
  first time that Message-ID is seen, accepted the next time (a transient one).
Every reply it gives to DATA is also recorded (`"event": "data"`), so a test can count
deliveries and see the retry, with `"tls"`: whether the session had switched to TLS.

It offers STARTTLS with a certificate for 127.0.0.1 and localhost, issued by a throwaway
CA whose certificate it writes to `ca.pem` beside the record file (the client trusts it
through CHRONICLE_SMTP_CA_FILE).

    usage: smtp-server.py RECORD_FILE
"""

import asyncio
import datetime
import email
import ipaddress
import os
import ssl
import email.policy
import json
import signal
import socket
import sys

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class Recorder:
    def __init__(self, path):
        self.path = path
        self.seen = set()

    def write(self, entry):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].startswith("reject"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message_id = msg.get("Message-ID", "")
        flaky = any(r.split("@")[0].startswith("flaky") for r in envelope.rcpt_tos)
        entry = {
            "event": "data",
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "message_id": message_id,
            "tls": session.ssl is not None,
        }
        if flaky and message_id not in self.seen:
            self.seen.add(message_id)
            entry["reply"] = "451 4.3.0 Try again later"
            self.write(entry)
            return entry["reply"]
        body = msg.get_body(preferencelist=("plain",))
        entry.update(
            {
                "reply": "250 2.0.0 Ok: queued",
                "subject": msg.get("Subject", ""),
                "from": msg.get("From", ""),
                "content_type": msg.get_content_type(),
                "body": body.get_content() if body is not None else "",
            }
        )
        self.write(entry)
        return entry["reply"]


def certificates(directory):
    """A CA (its certificate written to ca.pem) and a server certificate it issued for
    127.0.0.1 and localhost; returns the paths of the server's certificate and key."""
    now = datetime.datetime.now(datetime.timezone.utc)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    def cert(subject, issuer, key, signer, extensions):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity[0])
            .not_valid_after(validity[1])
        )
        for ext, critical in extensions:
            b = b.add_extension(ext, critical=critical)
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert(
        "chronicle test CA",
        "chronicle test CA",
        ca_key,
        ca_key,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
        ],
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert(
        "127.0.0.1",
        "chronicle test CA",
        key,
        ca_key,
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                False,
            ),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    pem = serialization.Encoding.PEM
    with open(os.path.join(directory, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    cert_path = os.path.join(directory, "server.pem")
    key_path = os.path.join(directory, "server.key")
    with open(cert_path, "wb") as f:
        f.write(leaf.public_bytes(pem))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert_path, key_path


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    record = sys.argv[1]
    open(record, "a").close()
    port = free_port()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*certificates(os.path.dirname(os.path.abspath(record))))
    controller = Controller(
        Recorder(record), hostname="127.0.0.1", port=port, tls_context=tls
    )
    controller.start()
    print(f"PORT {port}", flush=True)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
