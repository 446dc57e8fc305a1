//! Subscribe and unsubscribe requests from the web form, carried out after the answer.
//!
//! The form's answer is the same page for every address (docs/standards.md#20), and it must
//! take the same time too: asking a member to confirm leaving writes a pending request
//! and a mail, while a stranger's request writes nothing, and a stopwatch would tell
//! the two apart. So the handler only stores the request (one insert, whatever the
//! address) and answers; the inbound workers carry it out.

use super::subscriptions::Request;
use super::{App, AppError};
use crate::domain::{EmailAddress, List, RequestKind, ReturnPath, Source};
use crate::store;
use crate::store::web_requests::{MembershipRequest, WebRequest, WebRequestRow};

/// A request that still fails after this many attempts is kept as failed.
const MAX_ATTEMPTS: i32 = 5;

impl App {
    /// Stores a form request to be carried out by the workers; `req.source` is `web`.
    pub async fn queue_web_request(
        &self,
        list: &List,
        kind: RequestKind,
        req: &Request,
    ) -> Result<(), AppError> {
        let request = WebRequest::Membership(MembershipRequest {
            list_id: list.id,
            kind,
            address: req.address.to_string(),
            name: req.name.clone(),
            evidence: req.evidence.clone(),
        });
        store::web_requests::insert_web_request(&self.db, &request).await?;
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
        let request = WebRequest::Signin {
            address: address.to_string(),
            ip: ip.map(str::to_string),
            return_path: return_path.map(|p| p.as_str().to_string()),
        };
        store::web_requests::insert_web_request(&self.db, &request).await?;
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
        match row.request.as_ref().map_err(|e| anyhow::anyhow!("{e}"))? {
            WebRequest::Signin {
                address,
                ip,
                return_path,
            } => {
                let address = parse_stored(address)?;
                let return_path = return_path.as_deref().and_then(ReturnPath::parse);
                self.request_signin(&address, ip.as_deref(), return_path.as_ref())
                    .await?;
                Ok(())
            }
            WebRequest::Membership(m) => self.carry_out_membership(m).await,
        }
    }

    async fn carry_out_membership(&self, m: &MembershipRequest) -> Result<(), AppError> {
        let address = parse_stored(&m.address)?;
        let Some(list) = store::lists::find_list_by_id(&self.db, m.list_id).await? else {
            return Ok(());
        };
        let req = Request {
            address,
            name: m.name.clone(),
            source: Source::Web,
            evidence: m.evidence.clone(),
            in_reply_to: None,
        };
        match m.kind {
            RequestKind::Subscribe => self.request_subscription(&list, req).await?,
            RequestKind::Unsubscribe => self.request_unsubscription(&list, req).await?,
        };
        Ok(())
    }
}

/// An address as the form stored it.
fn parse_stored(address: &str) -> Result<EmailAddress, AppError> {
    EmailAddress::parse(address)
        .map_err(|e| anyhow::anyhow!("stored address {address}: {e}").into())
}
