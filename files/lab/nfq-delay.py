#!/usr/bin/python3
# The lab's WAN delay (scripts/lab/faults.ts, `lab.ts regions apply`): this machine's kernel has neither the
# netem nor the prio qdisc, so packets between the lab's simulated regions are sent by iptables (NFQUEUE, on the
# lab bridge's FORWARD path) to this program, which holds each one DELAY_MS and then accepts it. Constant delay:
# the packets leave in the order they came. Loss and region partitions are iptables rules, not done here.
# Python's standard library only (raw netlink; Node has no netlink sockets). Stops on SIGTERM: the queue is
# unbound and iptables' --queue-bypass lets traffic through undelayed.
#   nfq-delay.py QUEUE_NUM DELAY_MS
import collections
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SUBSYS_QUEUE = 3
MSG_PACKET, MSG_VERDICT, MSG_CONFIG = 0, 1, 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
CFG_CMD, CFG_PARAMS, CFG_QUEUE_MAXLEN, CFG_MASK, CFG_FLAGS = 1, 2, 3, 4, 5
CMD_BIND, CMD_UNBIND = 1, 2
COPY_META = 1
F_FAIL_OPEN = 1
PACKET_HDR, VERDICT_HDR = 1, 2
NF_ACCEPT = 1

queue, delay = int(sys.argv[1]), float(sys.argv[2]) / 1000.0
sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sock.bind((0, 0))
seq = 0


def attr(kind, data):
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * (-n % 4)


def send(mtype, attrs, ack=False):
    global seq
    seq += 1
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + b"".join(attrs)
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    sock.send(struct.pack("=IHHII", 16 + len(body), (SUBSYS_QUEUE << 8) | mtype, flags, seq, 0) + body)
    if ack:
        data = sock.recv(65536)
        _, t, _, _, _ = struct.unpack_from("=IHHII", data)
        err = struct.unpack_from("=i", data, 16)[0] if t == NLMSG_ERROR else 0
        if err:
            raise OSError(-err, f"nfqueue config message {mtype}: error {err}")


send(MSG_CONFIG, [attr(CFG_CMD, struct.pack("!BxH", CMD_BIND, socket.AF_INET))], ack=True)
send(MSG_CONFIG, [attr(CFG_PARAMS, struct.pack("!IB", 0, COPY_META))], ack=True)
send(MSG_CONFIG, [attr(CFG_QUEUE_MAXLEN, struct.pack("!I", 20000))], ack=True)
send(MSG_CONFIG, [attr(CFG_MASK, struct.pack("!I", F_FAIL_OPEN)), attr(CFG_FLAGS, struct.pack("!I", F_FAIL_OPEN))], ack=True)

held = collections.deque()
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
print(f"nfq-delay: queue {queue}, {delay * 1000:.0f} ms", flush=True)


def release(now):
    while held and held[0][0] <= now:
        _, pid = held.popleft()
        send(MSG_VERDICT, [attr(VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))])


while running:
    now = time.monotonic()
    release(now)
    timeout = max(0.0, held[0][0] - now) if held else 1.0
    try:
        ready, _, _ = select.select([sock], [], [], timeout)
    except InterruptedError:
        continue
    if not ready:
        continue
    try:
        data = sock.recv(1 << 20)
    except OSError:  # ENOBUFS: the kernel dropped queue messages (fail-open accepts when the queue is full)
        continue
    arrived = time.monotonic()
    off = 0
    while off + 16 <= len(data):
        length, mtype, _, _, _ = struct.unpack_from("=IHHII", data, off)
        if length < 16:
            break
        if mtype == (SUBSYS_QUEUE << 8) | MSG_PACKET:
            a = off + 20
            while a + 4 <= off + length:
                alen, akind = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if akind & 0x7FFF == PACKET_HDR:
                    held.append((arrived + delay, struct.unpack_from("!I", data, a + 4)[0]))
                a += (alen + 3) & ~3
        off += (length + 3) & ~3

# let every held packet go, then unbind
for _, pid in held:
    send(MSG_VERDICT, [attr(VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))])
send(MSG_CONFIG, [attr(CFG_CMD, struct.pack("!BxH", CMD_UNBIND, socket.AF_INET))])
