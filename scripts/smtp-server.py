"""A real SMTP server for the mail tests (aiosmtpd from PyPI, in .venv by scripts/python-tools).

Listens on 127.0.0.1 (a free port, printed as `PORT <n>` once it accepts connections) and
appends one JSON line per accepted message to the record file: envelope sender and
recipients, Message-ID, Subject, From, the text body. Like a real server it may refuse:
- RCPT TO a local part starting with `reject`: 550 5.1.1 (a permanent refusal);
- DATA of a message with a recipient whose local part starts with `flaky`: 451 4.3.0 the
  first time that Message-ID is seen, accepted the next time (a transient one).
Every reply it gives to DATA is also recorded (`"event": "data"`), so a test can count
deliveries and see the retry.

    usage: smtp-server.py RECORD_FILE
"""

import asyncio
import email
import email.policy
import json
import signal
import socket
import sys

from aiosmtpd.controller import Controller


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
    controller = Controller(Recorder(record), hostname="127.0.0.1", port=port)
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
