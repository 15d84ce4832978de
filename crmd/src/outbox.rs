//! crmd's cluster messages go out through one task, in order, so that the daemon's loop
//! never waits on hbcomm (a decision maker placing a thousand groups would otherwise stop
//! reading its streams for as long as the sends take, and a stream that is not read stalls
//! the whole bus connection). A node's reports are snapshots of its whole state: of several
//! waiting to go out, only the newest is sent.

use std::collections::HashMap;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use hbapi::comm::CommProxy;

/// How soon a report hbcomm refused is tried again.
const RETRY: Duration = Duration::from_secs(1);

enum Outgoing {
    Message {
        to: String,
        /// `None`: the outbox's own type.
        msg_type: Option<&'static str>,
        body: HashMap<String, String>,
    },
    Flush(oneshot::Sender<()>),
}

impl Outgoing {
    fn is_report(&self) -> bool {
        matches!(self, Outgoing::Message { body, msg_type: None, .. } if body.get("op").is_some_and(|op| op == "report"))
    }
}

/// Sends crmd's cluster messages of one type.
#[derive(Clone)]
pub struct Outbox {
    queue: mpsc::UnboundedSender<Outgoing>,
}

impl Outbox {
    /// Starts the sending task.
    pub fn new(comm: CommProxy<'static>, msg_type: &'static str) -> Self {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Outgoing>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            // A report hbcomm refused (it may be restarting) is tried again each second
            // until a newer one replaces it: the decision maker waits for every report.
            let mut unsent_report: Option<Outgoing> = None;
            loop {
                let received = match unsent_report.take() {
                    None => waiting.recv_many(&mut batch, 4096).await,
                    Some(report) => {
                        match tokio::time::timeout(RETRY, waiting.recv_many(&mut batch, 4096)).await {
                            Ok(received) => {
                                if !batch.iter().any(Outgoing::is_report) {
                                    batch.insert(0, report);
                                }
                                received
                            }
                            Err(_) => {
                                batch.push(report);
                                1
                            }
                        }
                    }
                };
                if received == 0 {
                    break;
                }
                let newest_report = batch.iter().rposition(Outgoing::is_report);
                for (index, outgoing) in batch.drain(..).enumerate() {
                    match outgoing {
                        Outgoing::Flush(done) => {
                            let _ = done.send(());
                        }
                        message if message.is_report() && Some(index) != newest_report => {}
                        Outgoing::Message {
                            to,
                            msg_type: other_type,
                            body,
                        } => {
                            let retry = (other_type.is_none()
                                && to.is_empty()
                                && body.get("op").is_some_and(|op| op == "report"))
                            .then(|| body.clone());
                            // Unanswered orders are decided and sent again by the decision
                            // maker; only reports are kept here for another try.
                            let sent_type = other_type.unwrap_or(msg_type);
                            if let Err(error) = comm.send_message(&to, sent_type, body).await {
                                tracing::warn!(to = %to, "{sent_type} message not sent: {error}");
                                if let Some(body) = retry {
                                    unsent_report = Some(Outgoing::Message {
                                        to,
                                        msg_type: None,
                                        body,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Queues a message to `to` ("" for every node).
    pub fn send(&self, to: &str, body: HashMap<String, String>) {
        let _ = self.queue.send(Outgoing::Message {
            to: to.to_owned(),
            msg_type: None,
            body,
        });
    }

    /// Queues a message of another type (Heartbeat's v1 protocol), in order with the rest.
    pub fn send_typed(&self, to: &str, msg_type: &'static str, body: HashMap<String, String>) {
        let _ = self.queue.send(Outgoing::Message {
            to: to.to_owned(),
            msg_type: Some(msg_type),
            body,
        });
    }

    /// Waits until everything queued before has been handed to hbcomm.
    pub async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.queue.send(Outgoing::Flush(done)).is_ok() {
            let _ = sent.await;
        }
    }
}
