//! What every service's storage module shares: generic repositories, unit of work, transactional outbox and inbox.
