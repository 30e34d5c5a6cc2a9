//! Caps on session channels: a few per connection, and a few more per user over all their
//! connections, so that one login cannot open hundreds of chats (each holding a room membership
//! and a join entry).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Session channels open per user (by name), over every connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserSessions(Arc<Mutex<HashMap<String, usize>>>);

/// One open session channel of a user; dropping it (channel closed, connection gone) frees it.
#[derive(Debug)]
pub(crate) struct UserSession {
    sessions: UserSessions,
    user: String,
}

impl UserSessions {
    /// Counts a session for `user` unless they already have `max` open.
    pub(crate) fn open(&self, user: String, max: usize) -> Option<UserSession> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(user.clone()).or_insert(0);
        if *count >= max {
            if *count == 0 {
                open.remove(&user);
            }
            return None;
        }
        *count += 1;
        metrics::gauge!("kanava_ssh_sessions").increment(1.0);
        Some(UserSession {
            sessions: self.clone(),
            user,
        })
    }

    #[cfg(test)]
    fn users(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl Drop for UserSession {
    fn drop(&mut self) {
        metrics::gauge!("kanava_ssh_sessions").decrement(1.0);
        let mut open = self.sessions.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_max_sessions_and_closing_frees_one() {
        let sessions = UserSessions::default();
        let held: Vec<_> = (0..3)
            .map(|_| sessions.open("alice".into(), 3).unwrap())
            .collect();
        assert!(sessions.open("alice".into(), 3).is_none());
        let bob = sessions.open("bob".into(), 3).unwrap();
        drop(held);
        assert!(sessions.open("alice".into(), 3).is_some());
        drop(bob);
        assert_eq!(
            sessions.users(),
            0,
            "no entry is kept for users with none open"
        );
        assert!(sessions.open("carol".into(), 0).is_none());
        assert_eq!(sessions.users(), 0);
    }
}
