//! Bounces (docs/standards.md, section F): recording what comes back, judging it, and the periodic
//! maintenance that follows a member whose delivery bounces turned off.
//!
//! A bounce is first recorded (from a report mailed to `L+bounces+VERP@D`, or a 5xx
//! from the relay), then judged by [`App::judge_bounces`] with one clock: hard bounces
//! score at most once a day, a score goes stale after `bounce-stale-days` quiet days,
//! at `bounce-score-threshold` delivery is turned off and the member told; then
//! [`App::maintain`] sends `bounce-warnings` warnings, one every
//! `bounce-warning-interval-days`, and removes the member after the last. Soft,
//! policy and unknown bounces never count against a member (a DMARC rejection is the
//! list's problem); policy bounces alert the owners once a day per receiving domain;
//! a complaint unsubscribes at once. Nothing here ever writes to a bounce's sender.

use super::outbox::{Mail, Staff};
use super::{App, AppError};
use crate::domain::bounce::BounceClass;
use crate::domain::{
    Delivery, EmailAddress, List, MemberStatus, Purpose, Role, VerpRef, VerpToken,
};
use crate::mail::bounce::{Reading, read_bounce_from};
use crate::store;
use crate::store::bounces::{NewBounce, UnjudgedBounce};
use serde_json::json;
use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::domain::bounce::BounceRecord;

/// How many of a member's bounces `members show` lists.
const SHOWN_BOUNCES: i64 = 10;

/// Bounces judged per transaction.
const JUDGE_BATCH: i64 = 64;
/// Queue rows and expired requests are kept this long.
const KEEP_ROWS: Duration = Duration::days(30);

/// What one run of the maintenance did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Another process was running it.
    pub skipped: bool,
    pub warnings_sent: usize,
    pub members_removed: usize,
    pub scores_reset: u64,
    pub rows_deleted: u64,
    /// Digest issues queued because their period ended.
    pub digests_sent: usize,
}

impl App {
    /// Records the reports in a mail to the list's bounce address. Each is attributed
    /// to the member the VERP token names, or, without a token, to the first address
    /// the report names that is a member of the list (a report may name nobody, a
    /// forwarding address or a stranger). Auto-replies and mail that reports no
    /// failure are not recorded. Returns a summary for the record.
    pub(crate) async fn record_bounce_mail(
        &self,
        list: &List,
        verp: Option<&str>,
        null_sender: bool,
        raw: &[u8],
        inbound_id: i64,
    ) -> Result<String, AppError> {
        let verp_member = self.verp_member(list, verp).await?;
        let reports = match read_bounce_from(raw, Some(null_sender)) {
            Reading::Bounce(reports) => reports,
            Reading::AutoReply => return Ok("ignored: an automatic reply, not a bounce".into()),
            Reading::NotABounce => return Ok("ignored: no delivery report found".into()),
        };
        // a notice naming several addresses, to one member's VERP address: the entry
        // that names that member, if one does
        let reports = match &verp_member {
            Some(m) if reports.len() > 1 => {
                let (named, others): (Vec<_>, Vec<_>) = reports.into_iter().partition(|r| {
                    r.recipients
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(&m.address))
                });
                if named.is_empty() { others } else { named }
            }
            _ => reports,
        };
        let mut tx = self.db.begin().await?;
        if store::bounces::find_recorded(&mut *tx, inbound_id).await? {
            return Ok("bounces recorded already".into());
        }
        let mut recorded = Vec::new();
        for report in &reports {
            // the signed VERP address says whose copy this was; the address a report
            // names can be a forwarding address, another member, or forged
            let member = match &verp_member {
                Some(m) => Some(m.clone()),
                None => named_member(&mut tx, list, &report.recipients).await?,
            };
            // a complaint unsubscribes at once: only when the VERP address vouches for it
            let class = match report.class {
                BounceClass::Complaint if verp_member.is_none() => BounceClass::Unknown,
                c => c,
            };
            metrics::counter!("listd_bounces_total", "class" => class.as_str()).increment(1);
            let address = match &member {
                Some(m) if verp_member.is_none() => Some(m.address.clone()),
                m => report
                    .recipient()
                    .map(str::to_string)
                    .or_else(|| m.as_ref().map(|m| m.address.clone())),
            };
            store::bounces::insert_bounce(
                &mut *tx,
                &NewBounce {
                    list_id: list.id,
                    member_id: member.as_ref().map(|m| m.id),
                    address: address.as_deref(),
                    class,
                    status: report.status.as_deref(),
                    diagnostic: report.diagnostic.as_deref(),
                    source: "report",
                    inbound_id: Some(inbound_id),
                },
            )
            .await?;
            recorded.push(format!(
                "{class} {} for {}",
                report.status.as_deref().unwrap_or("-"),
                member
                    .as_ref()
                    .map_or("no member".to_string(), |m| m.address.clone())
            ));
        }
        tx.commit().await?;
        if recorded.is_empty() {
            return Ok("no delivery report found".into());
        }
        Ok(format!("bounces recorded: {}", recorded.join(", ")))
    }

    /// A member's most recent bounces, newest first.
    pub async fn member_bounces(
        &self,
        member: &crate::domain::Member,
    ) -> Result<Vec<BounceRecord>, AppError> {
        Ok(store::bounces::list_member_bounces(&self.db, member.id, SHOWN_BOUNCES).await?)
    }

    /// Applies the bounce rules, as of `now`, to every bounce recorded and not yet
    /// judged. Returns how many were judged.
    pub async fn judge_bounces(&self, now: OffsetDateTime) -> Result<usize, AppError> {
        let mut total = 0;
        loop {
            let mut tx = self.db.begin().await?;
            let mut batch = store::bounces::claim_unjudged(&mut *tx, JUDGE_BATCH).await?;
            let n = batch.len();
            // members are locked in one order by every judge: no deadlock between them
            batch.sort_by_key(|b| (b.member_id, b.id));
            for bounce in batch {
                // one bounce that cannot be judged (a broken template, say) is recorded
                // as such and does not hold up the others
                let mut one = sqlx::Acquire::begin(&mut *tx).await?;
                let outcome = match self.judge(&mut one, &bounce, now).await {
                    Ok(outcome) => {
                        one.commit().await?;
                        outcome
                    }
                    Err(e) => {
                        one.rollback().await?;
                        crate::error_limited!("judging a bounce failed", e, id = bounce.id);
                        format!("error: {e:#}")
                    }
                };
                store::bounces::update_bounce_judged(&mut *tx, bounce.id, now, &outcome).await?;
            }
            tx.commit().await?;
            self.wakeups.outbound();
            total += n;
            if n < JUDGE_BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// Tells the owners of each list with mail that listd itself could not hand to the
    /// relay in the last day (see `delivery::SendError::Local`), once a day per list.
    pub async fn alert_delivery_faults(&self, now: OffsetDateTime) -> Result<usize, AppError> {
        let mut tx = self.db.begin().await?;
        let faults =
            store::outbound::claim_delivery_fault_alerts(&mut *tx, now - Duration::DAY, now)
                .await?;
        for fault in &faults {
            let Some(list) = store::lists::find_list_by_id(&mut *tx, fault.list_id).await? else {
                continue;
            };
            tracing::error!(list = %list.address, waiting = fault.waiting, error = %fault.error, "the list cannot deliver; owners told");
            let ctx = json!({"waiting": fault.waiting, "error": fault.error});
            self.notify_staff(
                &mut tx,
                &list,
                Staff::Owners,
                "email/delivery_fault.txt",
                ctx,
                None,
            )
            .await?;
        }
        tx.commit().await?;
        if !faults.is_empty() {
            self.wakeups.outbound();
        }
        Ok(faults.len())
    }

    /// The member of `list` a signed VERP token names, if it is valid and names one.
    async fn verp_member(
        &self,
        list: &List,
        verp: Option<&str>,
    ) -> Result<Option<crate::domain::Member>, AppError> {
        let id = match verp.and_then(|t| VerpToken::verify(&self.settings.secret_key, t)) {
            Some(VerpRef::Member(short_id)) => {
                store::members::find_member_id_by_short_id(&self.db, short_id).await?
            }
            Some(VerpRef::MemberId(id)) => Some(id),
            Some(VerpRef::Message(id)) => self.member_sent_message(list, id).await?,
            None => None,
        };
        Ok(match id {
            Some(id) => store::members::find_member_by_id_for_update(&self.db, id)
                .await?
                .filter(|m| m.list_id == list.id && m.role == Role::Member),
            None => None,
        })
    }

    /// The member of `list` (in any state, pending included) to whom the queued
    /// message `outbound_id` went.
    async fn member_sent_message(
        &self,
        list: &List,
        outbound_id: i64,
    ) -> Result<Option<Uuid>, AppError> {
        let Some((Some(list_id), recipient)) =
            store::outbound::find_outbound_recipient(&self.db, outbound_id).await?
        else {
            return Ok(None);
        };
        let Ok(address) = EmailAddress::parse(&recipient) else {
            return Ok(None);
        };
        if list_id != list.id {
            return Ok(None);
        }
        Ok(
            store::members::find_member(&self.db, list.id, Role::Member, &address)
                .await?
                .map(|m| m.id),
        )
    }

    async fn judge(
        &self,
        tx: &mut PgConnection,
        bounce: &UnjudgedBounce,
        now: OffsetDateTime,
    ) -> Result<String, AppError> {
        let Some(member_id) = bounce.member_id else {
            return Ok("no member to attribute it to".into());
        };
        let Some(list) = store::lists::find_list_by_id(&mut *tx, bounce.list_id).await? else {
            return Ok("the list no longer exists".into());
        };
        let Some(state) = store::bounces::find_bounce_state_for_update(&mut *tx, member_id).await?
        else {
            return Ok("the member no longer exists".into());
        };
        if state.status != MemberStatus::Subscribed {
            return Ok("the member is no longer subscribed".into());
        }
        let class = bounce.class;
        Ok(match class {
            BounceClass::Hard => {
                self.score_hard_bounce(tx, &list, member_id, &state, now)
                    .await?
            }
            BounceClass::Policy => {
                let domain = state
                    .address
                    .rsplit_once('@')
                    .map_or("", |(_, d)| d)
                    .to_string();
                if store::bounces::insert_policy_alert(&mut *tx, list.id, &domain, now).await? {
                    self.alert_owners(tx, &list, &domain, bounce).await?;
                    "policy bounce: not scored, owners alerted".into()
                } else {
                    "policy bounce: not scored (owners already alerted today)".into()
                }
            }
            BounceClass::Complaint => {
                store::members::update_member_left(
                    &mut *tx,
                    member_id,
                    MemberStatus::Complained,
                    "complaint",
                )
                .await?;
                "complaint: unsubscribed".into()
            }
            BounceClass::Soft | BounceClass::Unknown => format!("{class} bounce: not scored"),
        })
    }

    /// A hard bounce counts once a day: a score past the list's threshold turns the
    /// member's delivery off, and the member and the owners are told.
    async fn score_hard_bounce(
        &self,
        tx: &mut PgConnection,
        list: &List,
        member_id: Uuid,
        state: &store::bounces::BounceState,
        now: OffsetDateTime,
    ) -> Result<String, AppError> {
        let s = &list.settings;
        let stale = Duration::days(s.bounce_stale_days.into());
        if state.scored_at.is_some_and(|t| now - t < Duration::DAY) {
            return Ok(format!(
                "not scored: already counted today (score {})",
                state.score
            ));
        }
        let base = match state.scored_at {
            Some(t) if now - t < stale => state.score,
            _ => 0,
        };
        let score = base + 1;
        store::bounces::update_member_score(&mut *tx, member_id, score, now).await?;
        if score < s.bounce_score_threshold
            || state.delivery != Delivery::Enabled
            || state.disabled_at.is_some()
        {
            return Ok(format!("score {score}"));
        }
        store::bounces::update_member_bounce_disabled(&mut *tx, member_id, now).await?;
        self.tell_member(
            tx,
            list,
            member_id,
            &state.address,
            "email/bounce_disabled.txt",
        )
        .await?;
        let ctx = json!({"address": state.address, "removed": false, "score": score});
        self.notify_staff(tx, list, Staff::Owners, "email/bounce_owner.txt", ctx, None)
            .await?;
        Ok(format!("score {score}: delivery disabled, member told"))
    }

    /// The periodic work of `serve`, as of `now`: bounce judging, warnings and
    /// removals of members whose delivery bounces turned off, stale scores, and old
    /// queue rows and requests. One process at a time (an advisory lock); the others
    /// skip.
    pub async fn maintain(&self, now: OffsetDateTime) -> Result<Maintenance, AppError> {
        let Some(mut tx) = store::begin_try_locked(&self.db, "listd maintenance").await? else {
            return Ok(Maintenance {
                skipped: true,
                ..Maintenance::default()
            });
        };
        self.judge_bounces(now).await?;
        self.alert_delivery_faults(now).await?;
        let mut done = Maintenance {
            digests_sent: self.send_due_digests(now).await?.len(),
            ..Maintenance::default()
        };
        for m in store::bounces::list_due_for_warning(&mut *tx, now).await? {
            let Some(list) = store::lists::find_list_by_id(&mut *tx, m.list_id).await? else {
                continue;
            };
            if m.warnings_sent < m.warnings {
                self.tell_member(
                    &mut tx,
                    &list,
                    m.member_id,
                    &m.address,
                    "email/bounce_warning.txt",
                )
                .await?;
                store::bounces::update_member_warned(&mut *tx, m.member_id, now).await?;
                done.warnings_sent += 1;
            } else {
                store::members::update_member_left(
                    &mut *tx,
                    m.member_id,
                    MemberStatus::Bounced,
                    "bounces",
                )
                .await?;
                done.members_removed += 1;
                let ctx = json!({"address": m.address, "removed": true});
                self.notify_staff(
                    &mut tx,
                    &list,
                    Staff::Owners,
                    "email/bounce_owner.txt",
                    ctx,
                    None,
                )
                .await?;
                tracing::info!(list = %list.address, member = %m.address, "removed after bounces");
            }
        }
        done.scores_reset = store::bounces::update_stale_scores(&mut *tx, now).await?;
        done.rows_deleted = store::outbound::delete_old_outbound(&mut *tx, now - KEEP_ROWS).await?
            + store::pending::delete_expired_pending(&mut *tx, now - KEEP_ROWS).await?
            + store::sessions::delete_expired_sessions(&mut *tx, now - KEEP_ROWS).await?
            + store::digests::delete_old_digest_rows(&mut tx, now - KEEP_ROWS).await?;
        tx.commit().await?;
        self.wakeups.outbound();
        Ok(done)
    }

    /// Runs [`App::maintain`] every `every` until `stop` is set.
    pub async fn run_maintenance(
        self,
        every: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            match self.maintain(OffsetDateTime::now_utc()).await {
                Ok(m) if m != Maintenance::default() => tracing::info!(?m, "maintenance"),
                Ok(_) => {}
                Err(e) => crate::error_limited!("maintenance failed", e),
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// A notice to a member about their delivery (turned off, or a warning).
    async fn tell_member(
        &self,
        tx: &mut PgConnection,
        list: &List,
        member_id: Uuid,
        address: &str,
        template: &str,
    ) -> Result<(), AppError> {
        let member = store::members::find_member_by_id_for_update(&mut *tx, member_id).await?;
        let resume_url = member
            .as_ref()
            .and_then(|m| self.unsubscribe_token(m))
            .map(|t| format!("{}/resume/{}", self.settings.public_url, t.as_str()));
        let ctx = json!({
            "list_name": list.settings.name,
            "list_address": list.address.to_string(),
            "address": address,
            "resume_url": resume_url,
            "owner_address": list.address.with_suffix("owner"),
            "warnings": list.settings.bounce_warnings,
            "interval_days": list.settings.bounce_warning_interval_days,
        });
        self.queue(tx, list, Mail::new(Purpose::Notice, address, template, ctx))
            .await
    }

    /// Tells the owners that a receiving domain refuses the list's mail for policy
    /// reasons (DMARC, spam filtering): their problem to look into, not the member's.
    async fn alert_owners(
        &self,
        tx: &mut PgConnection,
        list: &List,
        domain: &str,
        bounce: &UnjudgedBounce,
    ) -> Result<(), AppError> {
        let ctx = json!({
            "domain": domain,
            "address": bounce.address,
            "status": bounce.status,
            "diagnostic": bounce.diagnostic,
        });
        self.notify_staff(tx, list, Staff::Owners, "email/policy_alert.txt", ctx, None)
            .await?;
        Ok(())
    }
}

/// The first of the addresses a report names that is a member of the list: a report
/// can name a forwarding address, the list's own address or strangers, and only a
/// member's bounce counts.
async fn named_member(
    tx: &mut PgConnection,
    list: &List,
    recipients: &[String],
) -> Result<Option<crate::domain::Member>, AppError> {
    for address in recipients
        .iter()
        .filter_map(|a| EmailAddress::parse(a).ok())
    {
        // an address still waiting for its confirmation is never named by an unsigned
        // report: anyone can request one and then forge its "bounce" (which would stop
        // its confirmations); its own VERP address vouches for a real one
        if let Some(m) =
            store::members::find_member(&mut *tx, list.id, Role::Member, &address).await?
            && m.status != MemberStatus::Pending
        {
            return Ok(Some(m));
        }
    }
    Ok(None)
}
