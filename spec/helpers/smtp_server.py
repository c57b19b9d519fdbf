#!/usr/bin/env python3
"""spec/helpers/smtp_server.py -- Python's own SMTP server (the smtpd
module of Python <= 3.11) on loopback, for LuaSocket's socket.smtp running
on spindle.socket.

    python3 -W ignore spec/helpers/smtp_server.py

Prints "PORT PID" first, then one line per message received:
    MAIL <from> RCPT <to>[,<to>...] BYTES <n> SUBJECT <subject>
"""
import asyncore
import email
import os
import smtpd


class Server(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        msg = email.message_from_string(data)
        print("MAIL %s RCPT %s BYTES %d SUBJECT %s" % (
            mailfrom, ",".join(rcpttos), len(data), msg.get("Subject", "")),
            flush=True)
        return None


def main():
    srv = Server(("127.0.0.1", 0), None, decode_data=True)
    print(srv.socket.getsockname()[1], os.getpid(), flush=True)
    try:
        asyncore.loop()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
