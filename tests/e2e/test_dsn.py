"""Delivery status notifications end to end (issue 4's bounces, issue 5's
delay notices): mail enqueued as smtpd enqueues it (smtpd itself refuses
unknown users at RCPT; a recipient accepted through sendmail or before a
user was removed reaches local delivery, which refuses it: 550 5.1.1)
comes back to the sender's Maildir as
an RFC 3464 report, parsed here with Python's email package; the null
sender and NOTIFY=NEVER get nothing; NOTIFY=SUCCESS gets a "delivered"
report; a bounce that itself fails makes one notice to the postmaster and no
loop; a recipient deferred past delay_warning_time gets one "delayed" notice
and `pillarbox queue show` tells its last reply and next attempt."""

import email
import email.policy
import json
import os
import re
import time
import unittest

import harness
import pbx_ipc
from harness import Instance

D = harness.DOMAIN
QUEUE = pbx_ipc.load_protocol("queue")
NEVER, SUCCESS, FAILURE, DELAY = 1, 2, 4, 8
SMTP_BEGIN = {"origin": "smtp", "protocol": "ESMTP", "client_address": "127.0.0.1",
              "client_hostname": "localhost", "helo": "client.example.net"}


def message(subject, body="Hello.\r\n"):
    return ("From: <alice@%s>\r\nTo: <x@%s>\r\nSubject: %s\r\nMessage-ID: <%s@client>\r\n\r\n%s"
            % (D, D, subject, subject.replace(" ", "-"), body)).encode()


def parse(path):
    with open(path, "rb") as f:
        return email.message_from_binary_file(f, policy=email.policy.compat32)


def status_fields(report):
    """The message/delivery-status part: (per-message fields, [per-recipient fields])."""
    part = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    assert len(part) == 1, [p.get_content_type() for p in report.walk()]
    blocks = part[0].get_payload()  # compat32: a list of Message, one per block
    return blocks[0], blocks[1:]


@unittest.skipUnless(harness.program("queue-manager") and harness.program("local-delivery")
                     and harness.program("authd"),
                     "queue-manager, local-delivery or authd missing")
class DsnTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        config = {key: "" for key, _ in harness.LISTENERS.values()}
        # mail.example.test (myhostname) listed too: the queue-manager routes
        # myhostname locally and qualifies postmaster with it, but authd's
        # resolver knows only `domains`.
        config.update({"remote_delivery_enable": "no", "delay_warning_time": "2s",
                       "bounce_size_limit": "2000", "domains": "%s mail.%s" % (D, D)})
        cls.inst = Instance(config=config,
                            users={"alice": "pw", "bob": "pw", "carol": "pw", "pm": "pw"},
                            start=False)
        with open(os.path.join(cls.inst.dir, "aliases"), "w") as f:
            f.write("postmaster: pm\n")
        cls.inst.start()
        cls.inst.wait_for_log(r"queue-manager.*listening on", timeout=15)
        deadline = time.monotonic() + 15
        for sock in ("local/local.sock", "auth/auth.sock"):
            while (not os.path.exists(os.path.join(cls.inst.runtime_dir, sock))
                   and time.monotonic() < deadline):
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.inst.stop()
        finally:
            cls.inst.cleanup()

    def send(self, sender, rcpts, data, begin=None, notify=None, orcpt=None):
        """Enqueues as smtpd does (the enqueue channel); returns the queue ID."""
        sock = os.path.join(self.inst.runtime_dir, "queue", "enqueue.sock")
        with pbx_ipc.Client(sock, QUEUE, timeout=30) as c:
            fields = dict(SMTP_BEGIN, sender=sender)
            fields.update(begin or {})
            c.send("begin", **fields)
            for r in rcpts:
                extra = {}
                if notify is not None:
                    extra["notify"] = notify
                if orcpt is not None:
                    extra["orcpt"] = orcpt
                c.send("rcpt", address=r, **extra)
            c.send("data", bytes=data)
            c.send("commit")
            name, fields = c.recv(30)
        self.assertEqual(name, "queued", fields)
        return fields["queue_id"]

    def wait_new(self, user, before, count=1, timeout=20):
        deadline = time.monotonic() + timeout * float(os.environ.get("PBX_E2E_TIMEOUT_SCALE", 1))
        while time.monotonic() < deadline:
            new = sorted(set(self.inst.maildir_messages(user)) - set(before))
            if len(new) >= count:
                return new
            time.sleep(0.05)
        self.fail("no new message for %s:\n%s" % (user, self.inst.log_text()[-4000:]))

    def notice_id(self, qid, kind="sender non-delivery notification"):
        m = self.inst.wait_for_log(re.escape(qid) + r": " + kind + r": ([0-9a-f]{20})",
                                   timeout=20)
        return m.group(1)

    def test_failure_returns_the_whole_message(self):
        before = self.inst.maildir_messages("alice")
        data = message("lost lunch")
        qid = self.send("alice@" + D, ["nosuchuser@" + D], data, begin={"envid": "QQ314159"},
                        orcpt="rfc822;nosuchuser@" + D)
        self.inst.wait_for_log(qid + r": to=<nosuchuser@%s>, .*status=bounced" % re.escape(D),
                               timeout=20)
        nid = self.notice_id(qid)
        self.inst.wait_for_log(qid + r": removed", timeout=20)
        self.inst.wait_for_log(nid + r": from=<>, size=\d+, nrcpt=1, origin=dsn", timeout=20)
        [path] = self.wait_new("alice", before)
        with open(path, "rb") as f:
            raw = f.read()
        self.assertTrue(raw.startswith(b"Return-Path: <>\r\n"), raw[:200])
        report = parse(path)
        self.assertEqual(report.get_content_type(), "multipart/report")
        self.assertEqual(report.get_param("report-type"), "delivery-status")
        self.assertEqual(report["Subject"], "Undelivered Mail Returned to Sender")
        self.assertEqual(report["From"], "Mail Delivery System <MAILER-DAEMON@mail.%s>" % D)
        self.assertEqual(report["To"], "<alice@%s>" % D)
        self.assertEqual(report["Auto-Submitted"], "auto-replied")
        self.assertEqual(report["Message-ID"], "<%s@mail.%s>" % (nid, D))
        self.assertIsNotNone(email.utils.parsedate_tz(report["Date"]))
        parts = report.get_payload()
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status", "message/rfc822"])
        human = parts[0].get_payload()
        self.assertIn("<nosuchuser@%s>: failed" % D, human)
        msg_fields, rcpts = status_fields(report)
        self.assertEqual(msg_fields["Reporting-MTA"], "dns; mail." + D)
        self.assertEqual(msg_fields["Original-Envelope-Id"], "QQ314159")
        self.assertIsNotNone(email.utils.parsedate_tz(msg_fields["Arrival-Date"]))
        self.assertEqual(len(rcpts), 1)
        r = rcpts[0]
        self.assertEqual(r["Final-Recipient"], "rfc822; nosuchuser@" + D)
        self.assertEqual(r["Original-Recipient"], "rfc822; nosuchuser@" + D)
        self.assertEqual(r["Action"], "failed")
        self.assertEqual(r["Status"], "5.1.1")
        self.assertTrue(r["Diagnostic-Code"].startswith("smtp; 550 5.1.1"), r["Diagnostic-Code"])
        self.assertIsNotNone(r["Last-Attempt-Date"])
        original = parts[2].get_payload()[0]
        self.assertEqual(original["Subject"], "lost lunch")
        self.assertIn("id " + qid, original["Received"])
        self.assertEqual(original.get_payload().rstrip("\r\n"), "Hello.")

    def test_ret_hdrs_and_large_messages_return_headers(self):
        big = ("y" * 70 + "\r\n") * 100  # over bounce_size_limit (2000)
        for begin, body in (({"ret": "HDRS"}, "short\r\n"), ({"ret": "FULL"}, big), ({}, big)):
            before = self.inst.maildir_messages("alice")
            qid = self.send("alice@" + D, ["nosuchuser@" + D], message("headers only", body),
                            begin=begin)
            self.notice_id(qid)
            [path] = self.wait_new("alice", before)
            report = parse(path)
            parts = report.get_payload()
            self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
            text = parts[2].get_payload()
            self.assertIn("Subject: headers only", text)
            self.assertNotIn("short", text)
            self.assertNotIn("yyyy", text)

    def test_null_sender_and_notify_never_get_nothing(self):
        before = {u: self.inst.maildir_messages(u) for u in ("alice", "pm")}
        q1 = self.send("", ["nosuchuser@" + D], message("from nobody"))
        self.inst.wait_for_log(q1 + r": to=<nosuchuser@%s>, status=bounced, no notice: null sender"
                               % re.escape(D), timeout=20)
        q2 = self.send("alice@" + D, ["nosuchuser@" + D], message("never"), notify=NEVER)
        self.inst.wait_for_log(q2 + r": to=<nosuchuser@%s>, status=bounced, no notice: "
                               r"NOTIFY=NEVER" % re.escape(D), timeout=20)
        self.inst.wait_for_log(q2 + r": removed", timeout=20)
        self.inst.wait_for_log(q1 + r": removed", timeout=20)
        time.sleep(1)
        log = self.inst.log_text()
        self.assertNotRegex(log, q1 + r": \S+ \S+ notification")
        self.assertNotRegex(log, q2 + r": \S+ \S+ notification")
        for u, msgs in before.items():
            self.assertEqual(self.inst.maildir_messages(u), msgs, u)

    def test_notify_success_gets_a_delivered_report(self):
        before_alice = self.inst.maildir_messages("alice")
        before_bob = self.inst.maildir_messages("bob")
        qid = self.send("alice@" + D, ["bob@" + D], message("track me"),
                        notify=SUCCESS | FAILURE)
        nid = self.notice_id(qid, "sender delivery status notification")
        self.wait_new("bob", before_bob)
        [path] = self.wait_new("alice", before_alice)
        report = parse(path)
        self.assertEqual(report["Subject"], "Successful Mail Delivery Report")
        self.assertEqual(report["Message-ID"], "<%s@mail.%s>" % (nid, D))
        _, rcpts = status_fields(report)
        self.assertEqual(rcpts[0]["Action"], "delivered")
        self.assertEqual(rcpts[0]["Status"], "2.0.0")
        self.assertEqual(rcpts[0]["Final-Recipient"], "rfc822; bob@" + D)
        self.assertEqual(report.get_payload()[2].get_content_type(), "text/rfc822-headers")

    def test_a_failing_bounce_goes_to_the_postmaster_once(self):
        before = self.inst.maildir_messages("pm")
        qid = self.send("ghost@" + D, ["nosuchuser@" + D], message("from a ghost"))
        nid = self.notice_id(qid)
        self.inst.wait_for_log(nid + r": to=<ghost@%s>, .*status=bounced" % re.escape(D),
                               timeout=20)
        pid = self.notice_id(nid, "postmaster non-delivery notification")
        self.inst.wait_for_log(nid + r": removed", timeout=20)
        self.inst.wait_for_log(pid + r": from=<>, size=\d+, nrcpt=1, origin=postmaster-notice",
                               timeout=20)
        [path] = self.wait_new("pm", before)
        report = parse(path)
        self.assertEqual(report["Subject"], "Postmaster Copy: Undelivered Mail")
        self.assertEqual(report["To"], "<postmaster@mail.%s>" % D)
        _, rcpts = status_fields(report)
        self.assertEqual(rcpts[0]["Final-Recipient"], "rfc822; ghost@" + D)
        self.assertEqual(rcpts[0]["Action"], "failed")
        self.assertEqual(rcpts[0]["Status"], "5.1.1")
        # The failed notice is over bounce_size_limit (2000 here): its header.
        inner = report.get_payload()[2]
        self.assertEqual(inner.get_content_type(), "text/rfc822-headers")
        self.assertIn("Subject: Undelivered Mail Returned to Sender", inner.get_payload())
        self.assertIn("To: <ghost@%s>" % D, inner.get_payload())
        self.inst.wait_for_log(pid + r": removed", timeout=20)
        time.sleep(1)
        self.assertEqual(len(self.wait_new("pm", before)), 1)
        self.assertNotRegex(self.inst.log_text(), re.escape(pid) + r": \S+ \S+ notification")

    def test_a_deferred_recipient_gets_one_delay_notice(self):
        # carol's Maildir becomes unwritable: local delivery defers (4.2.0).
        maildir = os.path.join(self.inst.mail_dir, "carol", "Maildir")
        st = os.stat(maildir)
        os.chown(maildir, 0, 0)
        try:
            before = self.inst.maildir_messages("alice")
            qid = self.send("alice@" + D, ["carol@" + D], message("slow"))
            self.inst.wait_for_log(qid + r": to=<carol@%s>, .*status=deferred" % re.escape(D),
                                   timeout=20)
            self.notice_id(qid, "sender delay notification")
            [path] = self.wait_new("alice", before)
            report = parse(path)
            self.assertEqual(report["Subject"], "Delayed Mail (still being retried)")
            _, rcpts = status_fields(report)
            self.assertEqual(rcpts[0]["Action"], "delayed")
            self.assertEqual(rcpts[0]["Status"], "4.2.0")
            self.assertIsNotNone(email.utils.parsedate_tz(rcpts[0]["Will-Retry-Until"]))
            self.assertEqual(report.get_payload()[2].get_content_type(), "text/rfc822-headers")

            shown = self.inst.tool("queue", "show", qid)
            self.assertEqual(shown.returncode, 0, shown.stderr)
            self.assertRegex(shown.stdout, r"recipient: <carol@%s>\n  state: deferred\n"
                             % re.escape(D))
            self.assertRegex(shown.stdout, r"  next-attempt: \S+")
            self.assertRegex(shown.stdout, r"  last-reply: 450 4\.2\.0 ")
            js = json.loads(self.inst.tool("queue", "show", "--json", qid).stdout)
            self.assertEqual(js["recipients"][0]["state"], "deferred")
            self.assertTrue(js["recipients"][0]["last_reply"].startswith("450 4.2.0"))
            self.assertGreater(js["recipients"][0]["next_attempt"], 0)
        finally:
            os.chown(maildir, st.st_uid, st.st_gid)
        self.inst.tool("queue", "flush", qid)
        self.inst.wait_for_log(qid + r": to=<carol@%s>, .*status=sent" % re.escape(D),
                               timeout=40)
        self.inst.wait_for_log(qid + r": removed", timeout=20)
        log = self.inst.log_text()
        self.assertEqual(len(re.findall(re.escape(qid) + r": sender delay notification", log)), 1)
        self.assertEqual(len(self.wait_new("alice", before)), 1)


if __name__ == "__main__":
    unittest.main()
