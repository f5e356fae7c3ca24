//! Leader routing: which node leads (remembered, else asked of every node),
//! following "not the leader" answers, and running a call on the leader
//! with retries, backoff and a deadline.

use std::future::Future;
use std::time::Duration;

use config::ReplicaId;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::ClientError;
use crate::proto;
use crate::status::Role;

/// One step of a request against the leader.
pub(crate) enum Attempt<T> {
    Done(T),
    /// The node says the leader is elsewhere.
    Redirect(proto::LeaderHint),
    /// The node cannot serve now; try again (possibly elsewhere).
    Retry(String),
}

impl Client {
    /// Remembers replica `id`'s node address, from a leader hint or the
    /// membership.
    pub(crate) fn learn(&self, id: u32, addr: &str) {
        let Some(id) = ReplicaId::new(id) else {
            return;
        };
        if addr.is_empty() {
            return;
        }
        self.inner.nodes.lock().unwrap().insert(addr.to_owned(), id);
        let mut eps = self.inner.endpoints.lock().unwrap();
        if !eps.iter().any(|e| e == addr) {
            eps.push(addr.to_string());
        }
    }

    pub(crate) fn follow_hint(&self, hint: &proto::LeaderHint) {
        if hint.addr.is_empty() || ReplicaId::new(hint.leader).is_none() {
            self.forget_leader();
        } else {
            self.learn(hint.leader, &hint.addr);
            *self.inner.leader.lock().unwrap() = Some(hint.addr.clone());
        }
    }

    pub(crate) fn forget_leader(&self) {
        *self.inner.leader.lock().unwrap() = None;
    }

    /// The leader's address: the last one seen, or asked of every node at
    /// once. The first node that says it leads is taken without waiting for
    /// the others: a node that is down may take the whole timeout to fail,
    /// and while it does, nothing held for a commit can be released. Only
    /// if none does is a hint from the others taken. Fails with
    /// [`ClientError::Rejected`] if the nodes refuse this client's
    /// credentials.
    pub(crate) async fn find_leader(&self) -> Result<String, ClientError> {
        if let Some(l) = self.inner.leader.lock().unwrap().clone() {
            return Ok(l);
        }
        let endpoints = self.inner.endpoints.lock().unwrap().clone();
        let mut asks: FuturesUnordered<_> = endpoints
            .iter()
            .map(|addr| async move {
                (
                    addr.clone(),
                    self.node_status(addr, Duration::from_secs(1)).await,
                )
            })
            .collect();
        let mut hinted = None;
        let mut refused = None;
        while let Some((addr, status)) = asks.next().await {
            let s = match status {
                Ok(s) => s,
                Err(ClientError::Rejected(why)) => {
                    refused = Some(format!("{addr}: {why}"));
                    continue;
                }
                Err(_) => continue,
            };
            for m in &s.members {
                self.learn(m.id, &m.addr);
            }
            if s.role == Role::Leader {
                *self.inner.leader.lock().unwrap() = Some(addr.clone());
                return Ok(addr);
            }
            if let Some(leader) = s.leader
                && !s.leader_addr.is_empty()
            {
                self.learn(leader, &s.leader_addr);
                hinted = Some(s.leader_addr.clone());
            }
        }
        if let Some(h) = hinted {
            *self.inner.leader.lock().unwrap() = Some(h.clone());
            return Ok(h);
        }
        match refused {
            Some(why) => Err(ClientError::Rejected(why)),
            None => Err(ClientError::Unavailable(
                "no event log node knows a leader".into(),
            )),
        }
    }

    pub(crate) async fn leader(&self) -> Option<String> {
        self.find_leader().await.ok()
    }

    /// Runs `call` on the leader's `stub` (its event log or admin API) until
    /// it is done, fails, or the deadline passes, following redirects and
    /// backing off between tries.
    pub(crate) async fn on_leader<S, T, F, Fut>(
        &self,
        stub: fn(&Client, &str) -> Result<S, ClientError>,
        mut call: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(S) -> Fut,
        Fut: Future<Output = Result<Attempt<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.inner.opts.deadline;
        let mut backoff = Backoff::client();
        let mut last_problem = String::from("no event log node answered");
        loop {
            let found = match self.find_leader().await {
                Err(ClientError::Rejected(why)) => return Err(ClientError::Rejected(why)),
                Err(e) => {
                    last_problem = e.to_string();
                    None
                }
                Ok(addr) => Some(addr),
            };
            if let Some(addr) = found {
                let api = stub(self, &addr)?;
                match tokio::time::timeout(self.inner.opts.request_timeout, call(api)).await {
                    Ok(Ok(Attempt::Done(t))) => return Ok(t),
                    Ok(Ok(Attempt::Redirect(hint))) => {
                        let moved = !hint.addr.is_empty() && hint.addr != addr;
                        self.follow_hint(&hint);
                        last_problem = format!("{addr} is not the leader");
                        if moved {
                            continue;
                        }
                    }
                    Ok(Ok(Attempt::Retry(why))) => {
                        self.forget_leader();
                        last_problem = format!("{addr}: {why}");
                    }
                    Ok(Err(status)) => {
                        if status.code() == tonic::Code::Unauthenticated {
                            return Err(ClientError::Rejected(format!(
                                "{addr}: {}",
                                status.message()
                            )));
                        }
                        self.forget_leader();
                        last_problem = format!("{addr}: {}", status.message());
                    }
                    Err(_) => {
                        self.forget_leader();
                        last_problem = format!("{addr} did not answer in time");
                    }
                }
            }
            if Instant::now() + backoff.peek() > deadline {
                return Err(ClientError::Unavailable(last_problem));
            }
            backoff.wait().await;
        }
    }
}
