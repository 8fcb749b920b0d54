"""Options of a sandbox: the store's shape, the accepted key and the enforcement switches."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from klaviyo_analytics.errors import ConfigurationError

# A fixed default "now" keeps a store identical across runs and machines.
DEFAULT_END = datetime(2026, 7, 1, tzinfo=UTC)
DEFAULT_API_KEY = "pk_sandbox_0123456789abcdef"
REVISION = "2026-07-15"


@dataclass(frozen=True)
class StoreOptions:
    """Describe the generated store; the same options always give the same data."""

    seed: int = 1
    profiles: int = 2_000
    days: int = 60
    campaigns: int = 12
    flows: int = 5
    end: datetime = DEFAULT_END
    timezone: str = "America/New_York"
    currency: str = "USD"
    organization_name: str = "Sandbox Outfitters"
    # Organic shopping sessions per active profile and day, before seasonality.
    session_rate: float = 0.03

    def __post_init__(self) -> None:
        """Check ranges; raise ConfigurationError naming the bad option."""
        if self.profiles < 10:
            raise ConfigurationError(f"profiles must be at least 10, got {self.profiles}")
        if self.days < 1:
            raise ConfigurationError(f"days must be at least 1, got {self.days}")
        if self.campaigns < 0 or self.flows < 0:
            raise ConfigurationError("campaigns and flows must not be negative")
        if self.end.tzinfo is None:
            raise ConfigurationError("end must be timezone-aware")
        if self.session_rate < 0:
            raise ConfigurationError(f"session_rate must not be negative, got {self.session_rate}")


@dataclass(frozen=True)
class FaultOptions:
    """Describe injected latency and faults; all off by default."""

    latency_ms: int = 0
    latency_jitter_ms: int = 0
    p429: float = 0.0
    p500: float = 0.0
    p503: float = 0.0
    p_timeout: float = 0.0
    timeout_s: float = 30.0
    p_malformed: float = 0.0
    p_truncated: float = 0.0
    p_reset: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        """Check probabilities; raise ConfigurationError naming the bad knob."""
        probabilities = {
            "p429": self.p429,
            "p500": self.p500,
            "p503": self.p503,
            "p_timeout": self.p_timeout,
            "p_malformed": self.p_malformed,
            "p_truncated": self.p_truncated,
            "p_reset": self.p_reset,
        }
        for name, value in probabilities.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"{name} must be within [0, 1], got {value}")
        if sum(probabilities.values()) > 1.0:
            raise ConfigurationError("fault probabilities must not add up to more than 1")
        if self.latency_ms < 0 or self.latency_jitter_ms < 0 or self.timeout_s < 0:
            raise ConfigurationError("latency and timeout must not be negative")


@dataclass(frozen=True)
class SandboxConfig:
    """Configure one sandbox server."""

    store: StoreOptions = field(default_factory=StoreOptions)
    api_key: str = DEFAULT_API_KEY
    rate_limits: bool = True
    # Multiplies every limit of the spec (2.0 allows twice as many requests).
    rate_limit_scale: float = 1.0
    live: bool = False
    faults: FaultOptions = field(default_factory=FaultOptions)

    def __post_init__(self) -> None:
        """Check the options; raise ConfigurationError naming the bad one."""
        if not self.api_key:
            raise ConfigurationError("api_key must not be empty")
        if self.rate_limit_scale <= 0:
            raise ConfigurationError(
                f"rate_limit_scale must be positive, got {self.rate_limit_scale}"
            )
