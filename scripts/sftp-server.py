"""A real SFTP server for the import tests (asyncssh from PyPI, in .venv by scripts/python-tools).

Serves ROOT (chrooted) on a free 127.0.0.1 port with a throwaway ed25519 host key, to USER
logging in with PASSWORD or with a throwaway client key, whose private key (OpenSSH format)
it writes to CLIENT_KEY_FILE. Once it accepts connections it prints one line:
`PORT <n> FINGERPRINT <SHA256:…>` (the host key's, as `ssh-keygen -l` prints it).

    usage: sftp-server.py ROOT USER PASSWORD CLIENT_KEY_FILE
"""

import asyncio
import sys

import asyncssh


def main():
    root, user, password, client_key_file = sys.argv[1:5]
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    with open(client_key_file, "wb") as f:
        f.write(client_key.export_private_key("openssh"))
    authorized = asyncssh.import_authorized_keys(
        client_key.export_public_key("openssh").decode()
    )

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username):
            return True

        def password_auth_supported(self):
            return True

        def validate_password(self, username, pw):
            return username == user and pw == password

        def public_key_auth_supported(self):
            return True

        def validate_public_key(self, username, key):
            return username == user and authorized.validate(key, "127.0.0.1", "127.0.0.1") is not None

    async def serve():
        server = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            server_factory=Server,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root),
            allow_scp=False,
        )
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port} FINGERPRINT {host_key.get_fingerprint('sha256')}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
