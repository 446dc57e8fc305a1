//! Adding, removing and showing members (owner actions).
