#ifndef FISSION_CLIBPQ_SHIM_H
#define FISSION_CLIBPQ_SHIM_H
// libpq's headers live in /usr/include/postgresql on Debian; pkg-config `libpq` adds that path.
#include <libpq-fe.h>
#include <poll.h>
// The sockets of every connection are awaited together (Postgres/SocketReadiness.swift).
#include <sys/epoll.h>
#endif
