"""What every service process shares: logging, sd_notify, the service base, the supervisor."""
