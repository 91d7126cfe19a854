import Condense
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A flag set once, read from any thread.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var v = false
    var value: Bool { lock.withLock { v } }
    func set() { lock.withLock { v = true } }
}

/// Marks the server as draining when graceful shutdown begins (SIGTERM/SIGINT through the
/// service group): `/ready` answers 503, new `/v1/` requests get 503, requests in flight finish.
struct Drain: Service {
    let server: CondenseServer
    func run() async throws {
        try? await gracefulShutdown()
        server.draining.set()
        server.shutdown()
    }
}

/// Key check, draining, error shape, and the request metrics, for every route.
struct Guard: RouterMiddleware {
    typealias Context = BasicRequestContext
    let server: CondenseServer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let path = request.uri.path
        let route = Route(rawValue: path)?.rawValue ?? "other"   // the metrics' label: a served route or "other"
        let response: Response
        do {
            if path.hasPrefix("/v1/") {
                if server.draining.value { throw APIError(.serviceUnavailable, "the server is shutting down") }
                if let key = server.options.apiKey {
                    let auth = request.headers[.authorization] ?? ""
                    guard auth == "Bearer " + key else {
                        throw APIError(.unauthorized, auth.isEmpty ? "missing API key (Authorization: Bearer …)" : "invalid API key")
                    }
                }
            }
            response = try await next(request, context)
        } catch let e as APIError {
            response = e.response()
        } catch let e as HTTPError {
            let message = e.status == .notFound ? "no route \(request.method) \(path)" : (e.body ?? "\(e.status)")
            response = APIError(e.status, message).response()
        } catch {
            response = APIError(.internalServerError, "\(error)").response()
        }
        server.metrics.request(route: route, status: response.status.code, duration: ContinuousClock.now - start)
        return response
    }
}
