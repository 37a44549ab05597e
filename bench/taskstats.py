"""CPU time of processes as they exit, from the kernel's taskstats (netlink).

/proc/PID/stat of a parent counts its reaped children only as one sum
(cutime/cstime), and BSD process accounting rounds each process down to
10 ms, which is most of a short IMAP session. taskstats reports every
exiting task with its name, pid, parent pid and utime/stime in
microseconds. Root only (CAP_NET_ADMIN). Standard library only.

    ex = ExitRecorder()          # starts listening (all CPUs)
    ...                          # processes exit
    recs = ex.stop()             # [(pid, ppid, comm, cpu_seconds)]
"""

import os
import socket
import struct
import threading

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
TASKSTATS_CMD_GET = 1
TASKSTATS_CMD_ATTR_REGISTER_CPUMASK = 3
TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK = 4
TASKSTATS_TYPE_PID = 1
TASKSTATS_TYPE_STATS = 3
TASKSTATS_TYPE_AGGR_PID = 4
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
# struct taskstats (linux/taskstats.h, stable layout): offsets of the fields used
OFF_COMM, OFF_PID, OFF_PPID, OFF_UTIME, OFF_STIME = 80, 128, 132, 152, 160


def _attr(kind, data):
    n = 4 + len(data)
    return struct.pack("HH", n, kind) + data + b"\0" * ((4 - n % 4) % 4)


def _attrs(buf):
    out = []
    i = 0
    while i + 4 <= len(buf):
        n, kind = struct.unpack_from("HH", buf, i)
        if n < 4:
            break
        out.append((kind & 0x3FFF, buf[i + 4:i + n]))
        i += (n + 3) & ~3
    return out


class ExitRecorder:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self.seq = 0
        self.family = self._family()
        self.cpus = "0-%d" % (os.cpu_count() - 1)
        self._send(self.family, TASKSTATS_CMD_GET,
                   _attr(TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, self.cpus.encode() + b"\0"))
        self.records = []
        self.lost = False
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _send(self, kind, cmd, payload):
        self.seq += 1
        body = struct.pack("BBH", cmd, 1, 0) + payload
        self.sock.send(struct.pack("IHHII", 16 + len(body), kind, NLM_F_REQUEST, self.seq, 0)
                       + body)

    def _family(self):
        self._send(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                   _attr(CTRL_ATTR_FAMILY_NAME, b"TASKSTATS\0"))
        data = self.sock.recv(65536)
        _n, kind = struct.unpack_from("IH", data)
        if kind == NLMSG_ERROR:
            raise OSError("taskstats: no TASKSTATS netlink family")
        for k, v in _attrs(data[20:]):
            if k == CTRL_ATTR_FAMILY_ID:
                return struct.unpack_from("H", v)[0]
        raise OSError("taskstats: no family id")

    def _loop(self):
        self.sock.settimeout(0.2)
        while self.running:
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:  # ENOBUFS: records were dropped
                self.lost = True
                continue
            i = 0
            while i + 16 <= len(data):
                n, kind = struct.unpack_from("IH", data, i)
                if n < 16:
                    break
                if kind == self.family:
                    for k, v in _attrs(data[i + 20:i + n]):
                        if k != TASKSTATS_TYPE_AGGR_PID:
                            continue
                        for k2, st in _attrs(v):
                            if k2 == TASKSTATS_TYPE_STATS and len(st) >= OFF_STIME + 8:
                                comm = st[OFF_COMM:OFF_COMM + 32].split(b"\0")[0].decode(
                                    "latin-1")
                                pid, ppid = struct.unpack_from("II", st, OFF_PID)
                                ut, stime = struct.unpack_from("QQ", st, OFF_UTIME)
                                self.records.append((pid, ppid, comm, (ut + stime) / 1e6))
                i += (n + 3) & ~3

    def stop(self):
        self.running = False
        self.thread.join()
        try:
            self._send(self.family, TASKSTATS_CMD_GET,
                       _attr(TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK,
                             self.cpus.encode() + b"\0"))
        except OSError:
            pass
        self.sock.close()
        return self.records
