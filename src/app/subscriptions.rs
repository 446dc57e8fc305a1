//! Double opt-in: requests, confirmations and unsubscriptions.
