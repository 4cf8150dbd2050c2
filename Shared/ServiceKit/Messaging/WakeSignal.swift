import Synchronization

/// Lets a loop sleep until either something happened or a timeout passed. Signals that arrive
/// while nobody waits are remembered (one wake-up), so none is lost between checks.
public final class WakeSignal: Sendable {
    private let state = Mutex<(pending: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    public init() {}

    public func signal() {
        state.withLock { state in
            if let waiter = state.waiter {
                state.waiter = nil
                waiter.resume()
            } else {
                state.pending = true
            }
        }
    }

    /// Returns on a signal, after `timeout`, or when the task is cancelled.
    public func wait(timeout: Duration) async {
        let timer = Task { [weak self] in
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            self?.signal()
        }
        defer { timer.cancel() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                state.withLock { state in
                    if state.pending || Task.isCancelled {
                        state.pending = false
                        continuation.resume()
                    } else {
                        state.waiter = continuation
                    }
                }
            }
        } onCancel: {
            signal()
        }
    }
}
