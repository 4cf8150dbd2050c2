import Foundation

/// Polls `condition` until it holds or `timeout` passes; returns whether it held. Timeouts are
/// generous: the local broker's first group join alone takes 3 s, and CI machines are busy.
public func eventually(timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

/// What `waitFor` throws when the awaited thing never came, naming it.
public struct TimedOut: Error, CustomStringConvertible {
    public var description: String
}

/// Polls `probe` until it returns a value or `timeout` passes (then throws, naming `what`):
/// for state that arrives through events, such as an order confirmed after its team completed.
@discardableResult
public func waitFor<T>(_ what: String, timeout: Duration = .seconds(60), _ probe: () async throws -> T?) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let value = try await probe() { return value }
        try await Task.sleep(for: .milliseconds(200))
    }
    throw TimedOut(description: "timed out after \(timeout) waiting for \(what)")
}
