"""remote-delivery end to end: a real master with smtpd, queue-manager and
remote-delivery; a local `unbound` (started here, on a loopback high port)
serving test zones; small SMTP sinks (written here) on loopback addresses
127.0.0.x that all listen on one port (remote_smtp_port). Mail enters through
smtpd from a trusted client (trusted_networks = 127.0.0.0/8) for foreign
domains. Checked: MX preference and fallback to the second MX, the implicit
MX, IPv6, null MX, NXDOMAIN, a 4xx server (deferred, then delivered after
`pillarbox queue flush`), a 5xx server, STARTTLS `verify` against a test CA
with the right and a wrong name, a smart host with AUTH over TLS, and one
message to 3 recipients at 2 domains with one refused (issue: remote-delivery).
"""

import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import base64

import harness
from harness import Instance

UNBOUND = shutil.which("unbound") or ("/usr/sbin/unbound" if os.path.exists("/usr/sbin/unbound")
                                      else None)


def need():
    missing = [p for p in ("remote-delivery", "queue-manager", "smtpd", "pillarbox")
               if not harness.program(p)]
    if missing:
        return "not built: " + ", ".join(missing)
    if not UNBOUND:
        return "unbound is not installed (packaging/install-deps.sh)"
    return None


# ---- test PKI ---------------------------------------------------------------

def make_pki(d):
    """A test CA and server certificates signed by it: {name: (cert, key)}."""
    def run(*args):
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ca_key, ca_cert = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", "/CN=Pillarbox Test CA", "-keyout", ca_key,
        "-out", ca_cert)
    out = {"ca": ca_cert}
    for name in ("mx.tls.pbxtest", "wrong.pbxtest", "relay.pbxtest"):
        key, csr, cert = (os.path.join(d, name + ext) for ext in (".key", ".csr", ".pem"))
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=" + name,
            "-keyout", key, "-out", csr)
        ext = os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s\n" % name)
        run("openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert)
        out[name] = (cert, key)
    return out


# ---- an SMTP sink -----------------------------------------------------------

class Sink:
    """A small SMTP server on (ip, port). Records every message it accepts.

    rcpt(addr) -> reply line for RCPT TO (default 250); greeting; data_reply;
    tls: (cert, key) to offer STARTTLS; auth: (user, password) to offer AUTH
    PLAIN LOGIN after TLS (and then require it)."""

    def __init__(self, ip, port, family=socket.AF_INET, tls=None, auth=None, name="sink"):
        self.ip, self.port, self.name = ip, port, name
        self.greeting = "220 %s ESMTP test sink" % name
        self.rcpt = lambda addr: "250 2.1.5 ok"
        self.mail = lambda addr: "250 2.1.0 ok"
        self.data_reply = "250 2.0.0 ok: queued"
        self.tls, self.auth = tls, auth
        self.messages = []
        self.sessions = []  # per connection: {"tls": bool, "auth": user or None, "cmds": [...]}
        self.lock = threading.Lock()
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.stopped = False
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        """The host goes away: the listener and every open connection."""
        self.stopped = True
        with self.lock:
            conns = list(self.conns)
        for s in [self.sock] + conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _serve(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        info = {"tls": False, "auth": None, "cmds": []}
        with self.lock:
            self.sessions.append(info)
        conn.settimeout(30)
        f = conn.makefile("rb")

        def send(line):
            conn.sendall((line + "\r\n").encode())

        try:
            send(self.greeting)
            if not self.greeting.startswith("220"):
                f.readline()
                return
            mail, rcpts = None, []
            while True:
                raw = f.readline(4096)
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                info["cmds"].append(line)
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    ext = ["PIPELINING", "8BITMIME", "SIZE 10000000", "DSN"]
                    if self.tls and not info["tls"]:
                        ext.append("STARTTLS")
                    if self.auth and info["tls"]:
                        ext.append("AUTH PLAIN LOGIN")
                    lines = [self.name] + ext
                    for i, l in enumerate(lines):
                        send("250%s%s" % ("-" if i < len(lines) - 1 else " ", l))
                elif verb == "HELO":
                    send("250 " + self.name)
                elif verb == "STARTTLS" and self.tls:
                    send("220 2.0.0 go ahead")
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(*self.tls)
                    conn = ctx.wrap_socket(conn, server_side=True)
                    f = conn.makefile("rb")
                    info["tls"] = True
                elif verb == "AUTH" and self.auth:
                    parts = line.split()
                    if parts[1].upper() == "PLAIN":
                        blob = base64.b64decode(parts[2]).split(b"\0")
                        user, pw = blob[1].decode(), blob[2].decode()
                    else:
                        send("334 VXNlcm5hbWU6")
                        user = base64.b64decode(f.readline().strip()).decode()
                        send("334 UGFzc3dvcmQ6")
                        pw = base64.b64decode(f.readline().strip()).decode()
                    if (user, pw) == self.auth:
                        info["auth"] = user
                        send("235 2.7.0 authenticated")
                    else:
                        send("535 5.7.8 bad credentials")
                elif verb == "MAIL":
                    if self.auth and not info["auth"]:
                        send("530 5.7.0 authentication required")
                        continue
                    mail, rcpts = line[10:].split(" ")[0].strip("<>"), []
                    reply = self.mail(mail)
                    if not reply.startswith("2"):
                        mail = None
                    send(reply)
                    if reply.startswith("421"):
                        return
                elif verb == "RCPT":
                    addr = line[8:].split(" ")[0].strip("<>")
                    reply = self.rcpt(addr)
                    if reply.startswith("2"):
                        rcpts.append(addr)
                    send(reply)
                    if reply.startswith("421"):
                        return  # 421: the server closes the session (RFC 5321 3.8)
                elif verb == "DATA":
                    if not rcpts:
                        send("554 5.5.1 no valid recipients")
                        continue
                    send("354 go")
                    body = []
                    while True:
                        l = f.readline()
                        if not l or l == b".\r\n":
                            break
                        body.append(l[1:] if l.startswith(b".") else l)
                    reply = self.data_reply
                    if reply.startswith("2"):
                        with self.lock:
                            self.messages.append({"from": mail, "rcpts": list(rcpts),
                                                  "data": b"".join(body), "tls": info["tls"],
                                                  "auth": info["auth"]})
                    send(reply)
                    mail, rcpts = None, []
                elif verb == "RSET":
                    mail, rcpts = None, []
                    send("250 2.0.0 ok")
                elif verb == "QUIT":
                    send("221 2.0.0 bye")
                    return
                else:
                    send("502 5.5.2 unknown command")
        except (OSError, ssl.SSLError, ValueError, IndexError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def received(self, rcpt):
        with self.lock:
            return [m for m in self.messages if rcpt in m["rcpts"]]


# ---- unbound ----------------------------------------------------------------
# The zones live under "pbxtest.", not "test.": libunbound (like unbound)
# answers NXDOMAIN for the special-use "test." itself (RFC 6761 default
# local zones) without asking any forwarder.

ZONE = """
local-zone: "pbxtest." static
local-data: "mx.pbxtest. MX 10 mx1.mx.pbxtest."
local-data: "mx.pbxtest. MX 20 mx2.mx.pbxtest."
local-data: "mx1.mx.pbxtest. A 127.0.0.2"
local-data: "mx2.mx.pbxtest. A 127.0.0.3"
local-data: "implicit.pbxtest. A 127.0.0.4"
local-data: "nullmx.pbxtest. MX 0 ."
local-data: "defer.pbxtest. MX 10 mx.defer.pbxtest."
local-data: "mx.defer.pbxtest. A 127.0.0.5"
local-data: "reject.pbxtest. MX 10 mx.reject.pbxtest."
local-data: "mx.reject.pbxtest. A 127.0.0.6"
local-data: "tls.pbxtest. MX 10 mx.tls.pbxtest."
local-data: "mx.tls.pbxtest. A 127.0.0.7"
local-data: "badtls.pbxtest. MX 10 mx.badtls.pbxtest."
local-data: "mx.badtls.pbxtest. A 127.0.0.8"
local-data: "relay.pbxtest. A 127.0.0.9"
local-data: "multi-a.pbxtest. MX 10 mx.multi-a.pbxtest."
local-data: "mx.multi-a.pbxtest. A 127.0.0.10"
local-data: "multi-b.pbxtest. MX 10 mx.multi-b.pbxtest."
local-data: "mx.multi-b.pbxtest. A 127.0.0.11"
local-data: "opp.pbxtest. MX 10 mx.badtls.pbxtest."
local-data: "v6.pbxtest. MX 10 mx.v6.pbxtest."
local-data: "mx.v6.pbxtest. AAAA ::1"
local-data: "mx.v6.pbxtest. A 127.0.0.12"
local-data: "twomx.pbxtest. MX 10 mx1.twomx.pbxtest."
local-data: "twomx.pbxtest. MX 20 mx2.twomx.pbxtest."
local-data: "twomx-b.pbxtest. MX 10 mx1.twomx.pbxtest."
local-data: "twomx-b.pbxtest. MX 20 mx2.twomx.pbxtest."
local-data: "twomx-c.pbxtest. MX 10 mx1.twomx.pbxtest."
local-data: "twomx-c.pbxtest. MX 20 mx2.twomx.pbxtest."
local-data: "mx1.twomx.pbxtest. A 127.0.0.15"
local-data: "mx2.twomx.pbxtest. A 127.0.0.16"
"""


class Unbound:
    def __init__(self, d):
        self.port = harness.free_port()
        self.conf = os.path.join(d, "unbound.conf")
        self.log = os.path.join(d, "unbound.log")
        with open(self.conf, "w") as f:
            f.write("server:\n"
                    "  interface: 127.0.0.1\n"
                    "  port: %d\n"
                    "  do-daemonize: no\n"
                    "  username: \"\"\n"
                    "  chroot: \"\"\n"
                    "  directory: \"%s\"\n"
                    "  pidfile: \"\"\n"
                    "  use-syslog: no\n"
                    "  logfile: \"\"\n"
                    "  verbosity: 0\n"
                    "  do-ip6: no\n"
                    "  access-control: 127.0.0.0/8 allow\n"
                    "  module-config: \"iterator\"\n"
                    "%s"
                    "remote-control:\n"
                    "  control-enable: no\n" % (self.port, d, "".join(
                        "  %s\n" % l for l in ZONE.strip().splitlines())))
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", self.conf],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("unbound exited: " + open(self.log).read())
            if self._answers():
                return
            time.sleep(0.1)
        raise RuntimeError("unbound did not answer: " + open(self.log).read())

    def _answers(self):
        # A minimal DNS query for mx.pbxtest MX over UDP.
        q = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x02mx\x07pbxtest\x00\x00\x0f\x00\x01")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.3)
        try:
            s.sendto(q, ("127.0.0.1", self.port))
            data, _ = s.recvfrom(512)
            return data[:2] == b"\x12\x34" and data[3] & 0x0f == 0 and data[7] >= 2
        except OSError:
            return False
        finally:
            s.close()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def send_mail(port, rcpts, sender="alice@example.test", subject="remote test", body=None):
    msg = ("From: <%s>\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" %
           (sender, ", ".join("<%s>" % r for r in rcpts), subject,
            body or ".a line that needs dot-stuffing\r\nhello\r\n"))
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example.net")
        refused = s.sendmail(sender, rcpts, msg.encode())
    return refused


class RemoteTestBase(unittest.TestCase):
    extra_config = {}

    @classmethod
    def setUpClass(cls):
        why = need()
        if why:
            raise unittest.SkipTest(why)
        cls.tmp = tempfile.mkdtemp(prefix="pbx-remote-", dir="/tmp")
        os.chmod(cls.tmp, 0o755)
        cls.pki = make_pki(cls.tmp)
        os.chmod(cls.pki["ca"], 0o644)
        cls.dns = Unbound(cls.tmp)
        cls.port = harness.free_port()
        cls.sinks = {}
        try:
            cls.make_sinks()
            config = {"trusted_networks": "127.0.0.0/8",
                      "remote_resolver": "127.0.0.1@%d" % cls.dns.port,
                      "remote_smtp_port": str(cls.port),
                      "remote_tls_ca_file": cls.pki["ca"],
                      "remote_connect_timeout": "5s",
                      "remote_dns_timeout": "10s",
                      "minimal_backoff_time": "60s",
                      "maximal_backoff_time": "120s"}
            for k in ("submission_listen", "submissions_listen", "pop3_listen", "pop3s_listen",
                      "imap_listen", "imaps_listen"):
                config[k] = ""
            config.update(cls.extra_config)
            cls.inst = Instance(config=config, start=False)
            cls.prepare(cls.inst)
            cls.inst.start()
            cls.inst.wait_for_log(r"remote-delivery.*listening on", timeout=20)
        except BaseException:
            cls.teardown_all()
            raise

    @classmethod
    def make_sinks(cls):
        pass

    @classmethod
    def prepare(cls, inst):
        pass

    @classmethod
    def teardown_all(cls):
        inst = getattr(cls, "inst", None)
        try:
            if inst:
                inst.stop()
        finally:
            if inst:
                inst.cleanup()
            for s in cls.sinks.values():
                s.close()
            cls.dns.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        cls.teardown_all()

    def sink(self, name, ip, **kw):
        s = Sink(ip, self.port, name=name, **kw)
        self.sinks[name] = s
        return s

    def outcome(self, rcpt, status=r"\w+", start=0, timeout=30):
        """remote-delivery's line for rcpt: the match (relay, tls, dsn, status, reply)."""
        return self.inst.wait_for_log(
            r"remote-delivery.*: to=<%s>, relay=(?P<relay>\S+), delay=\d+, tls=(?P<tls>\S+), "
            r"dsn=(?P<dsn>\S+), status=(?P<status>%s) \((?P<reply>.*)\)" % (re.escape(rcpt), status),
            timeout=timeout, start=start)

    def qm_status(self, rcpt, word, start=0, timeout=30):
        """The queue-manager's line for rcpt: the match (relay, tls)."""
        return self.inst.wait_for_log(
            r"queue-manager.*: to=<%s>, relay=(?P<relay>\S+), delay=\d+, tls=(?P<tls>\S+), "
            r"status=%s" % (re.escape(rcpt), word), timeout=timeout, start=start)

    def mark(self):
        return len(self.inst.log_text())


class RemoteDeliveryTest(RemoteTestBase):
    @classmethod
    def make_sinks(cls):
        P = cls.port

        def add(name, ip, **kw):
            cls.sinks[name] = Sink(ip, P, name=name, **kw)
        add("mx1", "127.0.0.2")
        add("mx2", "127.0.0.3")
        add("implicit", "127.0.0.4")
        add("defer", "127.0.0.5")
        add("reject", "127.0.0.6")
        add("tls", "127.0.0.7", tls=cls.pki["mx.tls.pbxtest"])
        add("badtls", "127.0.0.8", tls=cls.pki["wrong.pbxtest"])
        add("multi-a", "127.0.0.10")
        add("multi-b", "127.0.0.11")
        add("v6", "::1", family=socket.AF_INET6)
        add("by-domain", "127.0.0.13")
        add("by-address", "127.0.0.14")
        add("twomx1", "127.0.0.15")
        add("twomx2", "127.0.0.16")
        cls.sinks["reject"].rcpt = lambda a: "550 5.1.1 <%s>: no such user" % a
        cls.sinks["multi-b"].rcpt = (lambda a: "550 5.1.1 <%s>: refused" % a
                                     if a.startswith("bad") else "250 2.1.5 ok")

    extra_config = {"remote_connection_cache_time": "10s"}

    @classmethod
    def prepare(cls, inst):
        policy = os.path.join(inst.dir, "tls_policy")
        with open(policy, "w") as f:
            f.write("# test policy\ntls.pbxtest verify\nbadtls.pbxtest verify\n")
        relay_map = os.path.join(inst.dir, "relay_map")
        with open(relay_map, "w") as f:
            f.write("# per-domain smart hosts\n.mapped.pbxtest [127.0.0.4]\n")
        sender_map = os.path.join(inst.dir, "sender_relay_map")
        with open(sender_map, "w") as f:
            f.write("# per-sender smart hosts\n@sender-a.example [127.0.0.13]\n"
                    "Boss@Example.TEST [127.0.0.14]\n")
        inst.write_config({"remote_tls_policy_file": policy, "relayhost_map": relay_map,
                           "sender_relayhost_map": sender_map})

    def test_mx_preference_then_fallback_to_the_second_mx(self):
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["pref@mx.pbxtest"])
        o = self.outcome("pref@mx.pbxtest", start=m)
        self.assertEqual(o["status"], "sent", o.group(0))
        self.assertEqual(o["relay"], "mx1.mx.pbxtest[127.0.0.2]:%d" % self.port)
        self.assertEqual(len(self.sinks["mx1"].received("pref@mx.pbxtest")), 1)
        got = self.sinks["mx1"].received("pref@mx.pbxtest")[0]
        self.assertEqual(got["from"], "alice@example.test")
        self.assertIn(b"\r\n.a line that needs dot-stuffing\r\n", got["data"])
        q = self.qm_status("pref@mx.pbxtest", "sent", start=m)
        # The queue-manager's line per attempt names the relay and the TLS
        # of the session (none: this sink offers no STARTTLS).
        self.assertEqual(q["relay"], "mx1.mx.pbxtest[127.0.0.2]:%d" % self.port)
        self.assertEqual(q["tls"], "none")
        # The first MX goes away: the second one gets the mail.
        self.sinks["mx1"].close()
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["fallback@mx.pbxtest"])
        o = self.outcome("fallback@mx.pbxtest", start=m)
        self.assertEqual(o["status"], "sent", o.group(0))
        self.assertEqual(o["relay"], "mx2.mx.pbxtest[127.0.0.3]:%d" % self.port)
        self.assertEqual(len(self.sinks["mx2"].received("fallback@mx.pbxtest")), 1)

    def test_implicit_mx_and_ipv6(self):
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["imp@implicit.pbxtest"])
        o = self.outcome("imp@implicit.pbxtest", start=m)
        self.assertEqual(o["status"], "sent", o.group(0))
        self.assertEqual(o["relay"], "implicit.pbxtest[127.0.0.4]:%d" % self.port)
        self.assertEqual(len(self.sinks["implicit"].received("imp@implicit.pbxtest")), 1)
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["six@v6.pbxtest"])
        o = self.outcome("six@v6.pbxtest", start=m)
        self.assertEqual(o["status"], "sent", o.group(0))
        self.assertEqual(o["relay"], "mx.v6.pbxtest[::1]:%d" % self.port)
        self.assertEqual(len(self.sinks["v6"].received("six@v6.pbxtest")), 1)

    def test_null_mx_and_nxdomain_fail_at_once(self):
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["nobody@nullmx.pbxtest", "x@nonexistent.pbxtest"])
        o = self.outcome("nobody@nullmx.pbxtest", start=m)
        self.assertEqual(o["status"], "failed")
        self.assertEqual(o["dsn"], "5.1.10")
        self.assertIn("null MX", o["reply"])
        o = self.outcome("x@nonexistent.pbxtest", start=m)
        self.assertEqual(o["status"], "failed")
        self.assertEqual(o["dsn"], "5.4.4")
        self.qm_status("nobody@nullmx.pbxtest", "bounced", start=m)
        self.qm_status("x@nonexistent.pbxtest", "bounced", start=m)

    def test_4xx_deferred_then_delivered_after_flush(self):
        sink = self.sinks["defer"]
        sink.rcpt = lambda a: "451 4.7.1 greylisted, try again"
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["grey@defer.pbxtest"])
        o = self.outcome("grey@defer.pbxtest", start=m)
        self.assertEqual(o["status"], "deferred")
        self.assertEqual(o["dsn"], "4.7.1")
        self.assertIn("greylisted", o["reply"])
        self.qm_status("grey@defer.pbxtest", "deferred", start=m)
        self.assertEqual(sink.received("grey@defer.pbxtest"), [])
        sink.rcpt = lambda a: "250 2.1.5 ok"
        m = self.mark()
        r = self.inst.tool("queue", "flush")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        o = self.outcome("grey@defer.pbxtest", start=m)
        self.assertEqual(o["status"], "sent", o.group(0))
        self.qm_status("grey@defer.pbxtest", "sent", start=m)
        self.assertEqual(len(sink.received("grey@defer.pbxtest")), 1)

    def test_5xx_fails(self):
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["nouser@reject.pbxtest"])
        o = self.outcome("nouser@reject.pbxtest", start=m)
        self.assertEqual(o["status"], "failed")
        self.assertEqual(o["dsn"], "5.1.1")
        self.assertIn("550 5.1.1", o["reply"])
        self.assertIn("in reply to RCPT TO", o["reply"])
        self.qm_status("nouser@reject.pbxtest", "bounced", start=m)

    def test_starttls_verify_right_and_wrong_name(self):
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["sec@tls.pbxtest"])
        o = self.outcome("sec@tls.pbxtest", start=m)
        self.assertEqual(o["status"], "sent", o.group(0))
        self.assertRegex(o["tls"], r"^TLSv1\.[23]:\S+:verified$")
        got = self.sinks["tls"].received("sec@tls.pbxtest")
        self.assertEqual(len(got), 1)
        self.assertTrue(got[0]["tls"])
        self.inst.wait_for_log(r"verified TLS connection to mx\.tls\.pbxtest\[127\.0\.0\.7\]", start=m)
        q = self.qm_status("sec@tls.pbxtest", "sent", start=m)
        self.assertRegex(q["tls"], r"^TLSv1\.[23]:\S+:verified$")
        self.assertEqual(q["tls"], o["tls"])
        # A certificate for another name: never delivered, deferred.
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["sec@badtls.pbxtest"])
        o = self.outcome("sec@badtls.pbxtest", start=m)
        self.assertEqual(o["status"], "deferred", o.group(0))
        self.assertEqual(o["dsn"], "4.7.5")
        self.assertIn("not verified", o["reply"])
        self.assertEqual(self.sinks["badtls"].received("sec@badtls.pbxtest"), [])
        # Opportunistic TLS (no policy entry) takes the same certificate.
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["any@opp.pbxtest"])
        o = self.outcome("any@opp.pbxtest", start=m)
        self.assertEqual(o["status"], "sent", o.group(0))
        self.assertRegex(o["tls"], r"^TLSv1\.[23]:\S+:unverified$")
        self.assertEqual(len(self.sinks["badtls"].received("any@opp.pbxtest")), 1)

    def test_three_recipients_two_domains_one_refused(self):
        m = self.mark()
        rcpts = ["a1@multi-a.pbxtest", "b1@multi-b.pbxtest", "bad@multi-b.pbxtest"]
        send_mail(self.inst.port("smtp"), rcpts, subject="multi")
        for r, want in (("a1@multi-a.pbxtest", "sent"), ("b1@multi-b.pbxtest", "sent"),
                        ("bad@multi-b.pbxtest", "failed")):
            o = self.outcome(r, start=m)
            self.assertEqual(o["status"], want, o.group(0))
        self.qm_status("bad@multi-b.pbxtest", "bounced", start=m)
        a = self.sinks["multi-a"].received("a1@multi-a.pbxtest")
        b = self.sinks["multi-b"].received("b1@multi-b.pbxtest")
        self.assertEqual(len(a), 1)
        self.assertEqual(len(b), 1)
        self.assertEqual(a[0]["rcpts"], ["a1@multi-a.pbxtest"])
        self.assertEqual(b[0]["rcpts"], ["b1@multi-b.pbxtest"])
        self.assertEqual(self.sinks["multi-b"].received("bad@multi-b.pbxtest"), [])
        m2 = self.inst.wait_for_log(r"queue-manager.*: removed", start=m)
        self.assertTrue(m2)

    def test_connection_reuse_dsn_parameters_and_smtputf8(self):
        sink = self.sinks["implicit"]
        m = self.mark()
        with smtplib.SMTP("127.0.0.1", self.inst.port("smtp"), timeout=30) as s:
            s.ehlo("client.example.net")
            s.sendmail("alice@example.test", ["r1@implicit.pbxtest"],
                       b"Subject: one\r\n\r\nfirst\r\n",
                       mail_options=["RET=HDRS", "ENVID=env+2B1"],
                       rcpt_options=["NOTIFY=SUCCESS,FAILURE",
                                     "ORCPT=rfc822;orig@implicit.pbxtest"])
        self.assertEqual(self.outcome("r1@implicit.pbxtest", start=m)["status"], "sent")
        send_mail(self.inst.port("smtp"), ["r2@implicit.pbxtest"])
        self.assertEqual(self.outcome("r2@implicit.pbxtest", start=m)["status"], "sent")
        # Both went through one SMTP session (the cached connection).
        with sink.lock:
            sessions = [s["cmds"] for s in sink.sessions
                        if any("r1@implicit.pbxtest" in c for c in s["cmds"])]
        self.assertEqual(len(sessions), 1)
        cmds = sessions[0]
        self.assertTrue(any("r2@implicit.pbxtest" in c for c in cmds), cmds)
        # DSN offered by the sink: the parameters were passed on.
        mail = [c for c in cmds if c.startswith("MAIL FROM")][0]
        self.assertTrue(mail.startswith("MAIL FROM:<alice@example.test> SIZE="), mail)
        self.assertIn(" RET=HDRS", mail)
        self.assertIn(" ENVID=env+2B1", mail)
        rcpt = [c for c in cmds if "r1@implicit.pbxtest" in c][0]
        self.assertIn("NOTIFY=SUCCESS,FAILURE", rcpt)
        self.assertIn("ORCPT=rfc822;orig@implicit.pbxtest", rcpt)
        # An SMTPUTF8 message to a server without SMTPUTF8 fails with 5.6.7.
        m = self.mark()
        with smtplib.SMTP("127.0.0.1", self.inst.port("smtp"), timeout=30) as s:
            s.ehlo("client.example.net")
            s.sendmail("alice@example.test", ["u8@implicit.pbxtest"],
                       "Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode(),
                       mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        o = self.outcome("u8@implicit.pbxtest", start=m)
        self.assertEqual(o["status"], "failed")
        self.assertEqual(o["dsn"], "5.6.7")
        self.assertIn("SMTPUTF8", o["reply"])
        self.assertEqual(sink.received("u8@implicit.pbxtest"), [])

    def test_relayhost_map_per_domain(self):
        # sub.mapped.pbxtest has no DNS records at all: the map sends it to
        # [127.0.0.4] (the implicit sink) without any lookup.
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["mapped@sub.mapped.pbxtest"])
        o = self.outcome("mapped@sub.mapped.pbxtest", start=m)
        self.assertEqual(o["status"], "sent", o.group(0))
        self.assertEqual(o["relay"], "127.0.0.4[127.0.0.4]:%d" % self.port)
        self.assertEqual(len(self.sinks["implicit"].received("mapped@sub.mapped.pbxtest")), 1)

    def test_sender_relayhost_map(self):
        # nowhere.pbxtest has no DNS records: only the sender decides where
        # the mail goes. @domain for one sender, a whole address for another.
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["s1@nowhere.pbxtest"], sender="anyone@sender-a.example")
        send_mail(self.inst.port("smtp"), ["s2@nowhere.pbxtest"], sender="boss@example.test")
        o = self.outcome("s1@nowhere.pbxtest", start=m)
        self.assertEqual(o["status"], "sent", o.group(0))
        self.assertEqual(o["relay"], "127.0.0.13[127.0.0.13]:%d" % self.port)
        o = self.outcome("s2@nowhere.pbxtest", start=m)
        self.assertEqual(o["status"], "sent", o.group(0))
        self.assertEqual(o["relay"], "127.0.0.14[127.0.0.14]:%d" % self.port)
        a = self.sinks["by-domain"].received("s1@nowhere.pbxtest")
        b = self.sinks["by-address"].received("s2@nowhere.pbxtest")
        self.assertEqual([x["from"] for x in a], ["anyone@sender-a.example"])
        self.assertEqual([x["from"] for x in b], ["boss@example.test"])
        self.assertEqual(self.sinks["by-domain"].received("s2@nowhere.pbxtest"), [])
        self.assertEqual(self.sinks["by-address"].received("s1@nowhere.pbxtest"), [])
        # Another sender of the same domain is not the mapped address; the
        # recipient's relayhost_map comes before the sender's entry.
        m = self.mark()
        send_mail(self.inst.port("smtp"), ["s3@nowhere.pbxtest"], sender="other@example.test")
        o = self.outcome("s3@nowhere.pbxtest", start=m)
        self.assertEqual(o["status"], "failed", o.group(0))
        self.assertEqual(o["relay"], "none")
        send_mail(self.inst.port("smtp"), ["s4@sub.mapped.pbxtest"], sender="boss@example.test")
        o = self.outcome("s4@sub.mapped.pbxtest", start=m)
        self.assertEqual(o["status"], "sent", o.group(0))
        self.assertEqual(o["relay"], "127.0.0.4[127.0.0.4]:%d" % self.port)

    def test_4xx_to_mail_or_421_tries_the_next_mx_a_rcpt_4xx_defers_one(self):
        one, two = self.sinks["twomx1"], self.sinks["twomx2"]
        try:
            # 4xx to MAIL FROM at the first MX: the second takes the message
            # in the same attempt (nothing deferred, no retry needed).
            one.mail = lambda a: "451 4.3.2 not now" if a == "alice@example.test" else "250 ok"
            m = self.mark()
            send_mail(self.inst.port("smtp"), ["m1@twomx.pbxtest"])
            o = self.outcome("m1@twomx.pbxtest", start=m)
            self.assertEqual(o["status"], "sent", o.group(0))
            self.assertEqual(o["relay"], "mx2.twomx.pbxtest[127.0.0.16]:%d" % self.port)
            self.qm_status("m1@twomx.pbxtest", "sent", start=m)
            self.assertEqual(one.received("m1@twomx.pbxtest"), [])
            self.assertEqual(len(two.received("m1@twomx.pbxtest")), 1)
            self.assertNotIn("m1@twomx.pbxtest>, relay=mx1", self.inst.log_text()[m:])
            # 421 to a RCPT: that host is closing; the recipients it did
            # not refuse go to the next MX; the one it refused with 5xx fails.
            # (Each part uses its own domain with the same MX hosts: the
            # connection kept from the last part would be reused otherwise.)
            one.mail = lambda a: "250 ok"
            one.rcpt = lambda a: ("550 5.1.1 no such user" if a.startswith("gone") else
                                  "421 4.3.2 closing" if a.startswith("r2") else "250 ok")
            m = self.mark()
            rcpts = ["gone@twomx-b.pbxtest", "r1@twomx-b.pbxtest", "r2@twomx-b.pbxtest"]
            send_mail(self.inst.port("smtp"), rcpts)
            o = self.outcome("gone@twomx-b.pbxtest", start=m)
            self.assertEqual(o["status"], "failed", o.group(0))
            self.assertEqual(o["relay"], "mx1.twomx.pbxtest[127.0.0.15]:%d" % self.port)
            for r in ("r1@twomx-b.pbxtest", "r2@twomx-b.pbxtest"):
                o = self.outcome(r, start=m)
                self.assertEqual(o["status"], "sent", o.group(0))
                self.assertEqual(o["relay"], "mx2.twomx.pbxtest[127.0.0.16]:%d" % self.port)
            got = two.received("r1@twomx-b.pbxtest")
            self.assertEqual(len(got), 1)
            self.assertEqual(sorted(got[0]["rcpts"]), ["r1@twomx-b.pbxtest", "r2@twomx-b.pbxtest"])
            self.assertEqual(one.received("r1@twomx-b.pbxtest"), [])
            # A 4xx (not 421) to one RCPT: only that recipient is deferred;
            # the other is delivered by the same (first) MX.
            one.rcpt = lambda a: "450 4.2.1 mailbox busy" if a.startswith("busy") else "250 ok"
            m = self.mark()
            send_mail(self.inst.port("smtp"), ["busy@twomx-c.pbxtest", "fine@twomx-c.pbxtest"])
            o = self.outcome("busy@twomx-c.pbxtest", start=m)
            self.assertEqual(o["status"], "deferred", o.group(0))
            self.assertEqual(o["dsn"], "4.2.1")
            self.assertEqual(o["relay"], "mx1.twomx.pbxtest[127.0.0.15]:%d" % self.port)
            o = self.outcome("fine@twomx-c.pbxtest", start=m)
            self.assertEqual(o["status"], "sent", o.group(0))
            self.assertEqual(o["relay"], "mx1.twomx.pbxtest[127.0.0.15]:%d" % self.port)
            self.qm_status("busy@twomx-c.pbxtest", "deferred", start=m)
            self.assertEqual(two.received("busy@twomx-c.pbxtest"), [])
            self.assertEqual(one.received("busy@twomx-c.pbxtest"), [])
        finally:
            one.mail = lambda a: "250 2.1.0 ok"
            one.rcpt = lambda a: "250 2.1.5 ok"

    def test_privileges(self):
        pid = self.inst.wait_for_child("remote-delivery")
        st = self.inst.proc_status(pid)
        import pwd
        uid = pwd.getpwnam("pbx-remote").pw_uid
        self.assertEqual(st["Uid"].split()[0], str(uid))
        self.assertEqual(st["CapEff"], "0000000000000000")
        self.assertEqual(st["NoNewPrivs"], "1")
        self.assertEqual(os.readlink("/proc/%d/root" % pid), self.inst.runtime_dir)


class SmartHostTest(RemoteTestBase):
    @classmethod
    def make_sinks(cls):
        cls.relay_port = harness.free_port()
        cls.sinks["relay"] = Sink("127.0.0.9", cls.relay_port, name="relay",
                                  tls=cls.pki["relay.pbxtest"], auth=("smart", "s3cr:et"))

    @classmethod
    def prepare(cls, inst):
        creds = os.path.join(inst.dir, "relay_credentials")
        with open(creds, "w") as f:
            f.write("# smart host\n[relay.pbxtest]:%d smart:s3cr:et\n" % cls.relay_port)
        os.chmod(creds, 0o600)
        inst.write_config({"relayhost": "[relay.pbxtest]:%d" % cls.relay_port,
                           "relayhost_credentials": creds})

    def test_a_smart_host_with_auth_over_tls(self):
        m = self.mark()
        # Any domain, even one with MX records elsewhere, goes to the relay.
        send_mail(self.inst.port("smtp"), ["far@mx.pbxtest", "away@elsewhere.example"])
        for r in ("far@mx.pbxtest", "away@elsewhere.example"):
            o = self.outcome(r, start=m)
            self.assertEqual(o["status"], "sent", o.group(0))
            self.assertEqual(o["relay"], "relay.pbxtest[127.0.0.9]:%d" % self.relay_port)
            self.assertRegex(o["tls"], r"^TLSv1\.[23]:")
        got = self.sinks["relay"].received("far@mx.pbxtest")
        self.assertEqual(len(got), 1)
        self.assertTrue(got[0]["tls"])
        self.assertEqual(got[0]["auth"], "smart")
        # AUTH came only after STARTTLS, in every session.
        for s in self.sinks["relay"].sessions:
            cmds = [c.split(" ")[0].upper() for c in s["cmds"]]
            if "AUTH" in cmds:
                self.assertIn("STARTTLS", cmds)
                self.assertLess(cmds.index("STARTTLS"), cmds.index("AUTH"))

    def test_b_credentials_file_must_be_private(self):
        creds = self.inst.config["relayhost_credentials"]
        os.chmod(creds, 0o644)
        try:
            m = self.mark()
            pid = self.inst.children().get("remote-delivery")
            os.kill(pid, 15)
            self.inst.wait_for_log(r"remote-delivery.*relay_credentials: holds passwords",
                                   start=m, timeout=20)
        finally:
            os.chmod(creds, 0o600)


if __name__ == "__main__":
    unittest.main()
