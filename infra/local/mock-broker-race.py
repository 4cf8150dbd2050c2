#!/usr/bin/env python3
"""Reproduces the abort of librdkafka's mock broker when it is taken down.

librdkafka 2.0.2 takes a mock broker down by closing its listener and binding the same port
again at once; if another socket was given the port in between, it aborts the whole process
("Failed to-create mock broker listener"). This provokes one way to it: another process given
the port in between. Holding a connection the broker has accepted across the down keeps the
port bound and stops that way, but it needs a port range narrowed to a few ports to be seen, so
KafkaLocalBroker does not do it. The abort the test process met was the other way, a child
spawned meanwhile holding the listener; `KafkaLocalBroker.spawningChild` closes it (see the
README, "The local Kafka broker").

This narrows the machine's ephemeral port range (needs root; restored on exit), starts
fission-broker, binds port-0 sockets from four threads as tests' servers do, and cycles the
broker down and up. Usage: mock-broker-race.py [path/to/fission-broker] [cycles]
Exits 0 if the broker survived every cycle, 1 if it died.
"""
import socket
import subprocess
import sys
import threading

RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else ".build/release/fission-broker"
    cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    saved = open(RANGE_FILE).read().split()
    # Twenty ports: bind(0) takes the odd ones, so the broker and the binders share ten.
    open(RANGE_FILE, "w").write("40000 40019")
    try:
        return race(binary, cycles)
    finally:
        open(RANGE_FILE, "w").write(" ".join(saved))


def race(binary, cycles):
    broker = subprocess.Popen([binary, "--no-default-topics"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    print(broker.stdout.readline().strip(), flush=True)
    stop = threading.Event()

    def bind_port_zero():
        while not stop.is_set():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))

    for _ in range(4):
        threading.Thread(target=bind_port_zero, daemon=True).start()
    try:
        for cycle in range(cycles):
            for command in ("down", "up"):
                broker.stdin.write(command + "\n")
                broker.stdin.flush()
                if not broker.stdout.readline():
                    print(f"the broker died after {cycle} cycles (exit {broker.wait()})")
                    return 1
        print(f"the broker survived {cycles} cycles")
        broker.stdin.write("quit\n")
        broker.stdin.flush()
        broker.wait()
        return 0
    finally:
        stop.set()
        broker.kill()


if __name__ == "__main__":
    sys.exit(main())
