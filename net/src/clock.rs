//! [`Clock`]: where the event loop reads the time for parked requests' deadlines, injected
//! through `ServerConfig::clock` so a test can move time by hand instead of sleeping.

/// A source of milliseconds. Deadlines a service gives `Action::Park` are absolute values of
/// the clock the server was configured with, so the service must read the same clock.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch (or any fixed origin the service agrees on).
    fn now_ms(&self) -> u64;
}

/// The system's wall clock: milliseconds since the Unix epoch, the engine's clock too, so
/// one clock can serve key expiry and parked deadlines.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64)
    }
}
