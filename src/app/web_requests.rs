//! Subscribe and unsubscribe requests from the web form, carried out after the answer.
//!
//! The form's answer is the same page for every address (docs/standards.md#20), and it must
//! take the same time too: asking a member to confirm leaving writes a pending request
//! and a mail, while a stranger's request writes nothing, and a stopwatch would tell
//! the two apart. So the handler only stores the request (one insert, whatever the
//! address) and answers; the inbound workers carry it out.

use super::subscriptions::Request;
use super::{App, AppError};
use crate::domain::{EmailAddress, Evidence, List, ReturnPath, Source};
use crate::store;
use crate::store::web_requests::{NewWebRequest, WebRequestRow};
use serde_json::json;

/// Join or leave (sign-in requests have their own function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebRequestKind {
    Subscribe,
    Unsubscribe,
}

impl WebRequestKind {
    fn as_str(self) -> &'static str {
        match self {
            WebRequestKind::Subscribe => "subscribe",
            WebRequestKind::Unsubscribe => "unsubscribe",
        }
    }
}

/// A request that still fails after this many attempts is kept as failed.
const MAX_ATTEMPTS: i32 = 5;

impl App {
    /// Stores a form request to be carried out by the workers; `req.source` is `web`.
    pub async fn queue_web_request(
        &self,
        list: &List,
        kind: WebRequestKind,
        req: &Request,
    ) -> Result<(), AppError> {
        let e = &req.evidence;
        let address = req.address.to_string();
        store::web_requests::insert_web_request(
            &self.db,
            &NewWebRequest {
                list_id: Some(list.id),
                kind: kind.as_str(),
                address: &address,
                name: req.name.as_deref(),
                evidence: json!({"ip": e.ip, "user_agent": e.user_agent, "form_text": e.form_text}),
            },
        )
        .await?;
        self.wakeups.inbound();
        Ok(())
    }

    /// Stores a sign-in request from the web form, to be carried out by the workers;
    /// `return_path` is the page the person was going to, where the link leads.
    pub async fn queue_signin_request(
        &self,
        address: &EmailAddress,
        ip: Option<&str>,
        return_path: Option<&ReturnPath>,
    ) -> Result<(), AppError> {
        let address = address.to_string();
        store::web_requests::insert_web_request(
            &self.db,
            &NewWebRequest {
                list_id: None,
                kind: "signin",
                address: &address,
                name: None,
                evidence: json!({"ip": ip, "return_path": return_path.map(ReturnPath::as_str)}),
            },
        )
        .await?;
        self.wakeups.inbound();
        Ok(())
    }

    /// Carries out a batch of stored form requests; returns how many were claimed.
    pub async fn process_web_requests_batch(&self) -> Result<usize, AppError> {
        let rows = store::web_requests::claim_web_requests(&self.db, 32, 300.0).await?;
        let n = rows.len();
        for row in rows {
            match self.carry_out(&row).await {
                Ok(()) => store::web_requests::delete_web_request(&self.db, row.id).await?,
                Err(e) => {
                    let give_up = row.attempts >= MAX_ATTEMPTS;
                    crate::error_limited!(
                        "carrying out a web form request failed",
                        e,
                        id = row.id,
                        give_up
                    );
                    let error = crate::mail::storable(&format!("{e:#}"));
                    store::web_requests::update_web_request_error(
                        &self.db, row.id, &error, give_up,
                    )
                    .await?;
                }
            }
        }
        Ok(n)
    }

    async fn carry_out(&self, row: &WebRequestRow) -> Result<(), AppError> {
        let address = EmailAddress::parse(&row.address)
            .map_err(|e| anyhow::anyhow!("stored address {}: {e}", row.address))?;
        let text = |key: &str| row.evidence[key].as_str().map(str::to_string);
        if row.kind == "signin" {
            let return_path = text("return_path").as_deref().and_then(ReturnPath::parse);
            self.request_signin(&address, text("ip").as_deref(), return_path.as_ref())
                .await?;
            return Ok(());
        }
        let Some(list_id) = row.list_id else {
            return Ok(());
        };
        let Some(list) = store::lists::find_list_by_id(&self.db, list_id).await? else {
            return Ok(());
        };
        let req = Request {
            address,
            name: row.name.clone(),
            source: Source::Web,
            evidence: Evidence {
                ip: text("ip"),
                user_agent: text("user_agent"),
                message_id: None,
                form_text: text("form_text"),
            },
            in_reply_to: None,
        };
        match row.kind.as_str() {
            "subscribe" => self.request_subscription(&list, req).await?,
            _ => self.request_unsubscription(&list, req).await?,
        };
        Ok(())
    }
}
