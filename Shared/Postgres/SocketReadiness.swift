import CLibPQ
import Foundation
import Synchronization

/// Wakes the task waiting for a connection's socket to become readable (or writable): one thread
/// of the process waits in `epoll_wait` for every connection's socket.
///
/// A statement is sent without blocking from the task that runs it; the task then awaits here
/// instead of a thread sleeping in libpq's `poll` per statement. Before, every statement hopped
/// to the connection's Dispatch queue and back, and under load the services spent a fifth to a
/// quarter of their CPU switching threads (perf, assists benchmark).
final class SocketReadiness: Sendable {
    static let shared = SocketReadiness()

    private let epoll: Int32
    private let waiters = Mutex<[Int32: CheckedContinuation<Void, Never>]>([:])

    private init() {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epoll >= 0, "epoll_create1 failed: errno \(errno)")
        let thread = Thread { [self] in self.run() }
        thread.name = "fission.postgres.sockets"
        thread.start()
    }

    /// Returns once `socket` is readable (or writable, when `writable`), has an error or was
    /// closed; the caller then asks libpq what happened. One waiter per socket at a time: a
    /// connection is used by one task at a time.
    func wait(for socket: Int32, writable: Bool = false) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            waiters.withLock { $0[socket] = continuation }
            // One-shot: the socket is disarmed when it fires, so no wake-up is left over for the
            // next waiter on the same socket.
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLONESHOT.rawValue | (writable ? EPOLLOUT.rawValue : 0)
            event.data.fd = socket
            if epoll_ctl(epoll, EPOLL_CTL_MOD, socket, &event) == 0 { return }
            // Not watched yet (a new connection, or a socket number reused after a close, which
            // removed the old registration).
            if epoll_ctl(epoll, EPOLL_CTL_ADD, socket, &event) == 0 { return }
            // Cannot be watched (closed under us): go on at once; libpq's next read reports it.
            waiters.withLock { $0.removeValue(forKey: socket) }?.resume()
        }
    }

    private func run() {
        let capacity: Int32 = 64
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Int(capacity))
        while true {
            let count = epoll_wait(epoll, events, capacity, -1)
            guard count > 0 else { continue }  // EINTR
            for index in 0..<Int(count) {
                let socket = events[index].data.fd
                waiters.withLock { $0.removeValue(forKey: socket) }?.resume()
            }
        }
    }
}
