//! Bringing members over from elsewhere, and taking them away again (`members import`
//! / `members export`, docs/contract.md#cli).
//!
//! An import is an owner's admin add of many addresses at once: the rows stream into
//! a staging table (`COPY`) and one set-based statement adds the new ones, in one
//! transaction. Running the same import again changes nothing. Addresses that left
//! the list (unsubscribed, removed, bounced out, complained) are skipped: only their
//! own new confirmation brings them back (docs/standards.md#30), which `--invite` sends.

use super::members::AddOutcome;
use super::{App, AppError};
use crate::domain::roster::RosterEntry;
use crate::domain::{EmailAddress, ListRef, Role};
use crate::store;

/// Rows sent to PostgreSQL per `COPY` chunk.
const COPY_CHUNK: usize = 5_000;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Rows read (valid addresses), repeats within the file included.
    pub read: u64,
    pub added: u64,
    pub already_members: u64,
    /// Left the list before: skipped (or invited with `--invite`).
    pub left: u64,
    pub invited: u64,
    /// Owner and moderator roles given.
    pub roles_given: u64,
    /// How the rows read map onto listd's settings.
    pub choices: ChoiceCounts,
    /// Nothing was changed: the report says what the import would do.
    pub dry_run: bool,
}

/// The members' choices carried over, counted over the rows read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChoiceCounts {
    /// Every message (Google Groups' "All email").
    pub each: u64,
    /// MIME digests ("Digest", "Abridged").
    pub digest: u64,
    pub digest_plain: u64,
    /// Delivery paused ("No email").
    pub no_mail: u64,
    /// Owners ("owner") and moderators ("manager").
    pub owners: u64,
    pub moderators: u64,
}

impl ChoiceCounts {
    fn count(&mut self, c: &crate::domain::roster::Choices) {
        use crate::domain::{Delivery, Mode};
        match c.mode {
            Mode::Each => self.each += 1,
            Mode::Digest => self.digest += 1,
            Mode::DigestPlain => self.digest_plain += 1,
        }
        if c.delivery == Delivery::Disabled {
            self.no_mail += 1;
        }
        match c.role {
            Role::Owner => self.owners += 1,
            Role::Moderator => self.moderators += 1,
            Role::Member => {}
        }
    }
}

/// How to import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Send a confirmation to addresses that left the list.
    pub invite: bool,
    /// No welcome to the new members.
    pub quiet: bool,
    /// Read and check everything, change nothing.
    pub dry_run: bool,
}

impl App {
    /// Imports members; `progress` is told how many rows have been staged so far.
    pub async fn import_members(
        &self,
        list: &ListRef,
        entries: impl Iterator<Item = RosterEntry>,
        options: ImportOptions,
        progress: impl Fn(u64),
    ) -> Result<ImportReport, AppError> {
        let ImportOptions {
            invite,
            quiet,
            dry_run,
        } = options;
        let list = self.get_list(list).await?;
        let mut tx = self.db.begin().await?;
        // the transaction's start: every row this import adds has this subscribed_at
        let started = store::now(&mut tx).await?;
        store::roster::create_staging(&mut tx).await?;
        let mut report = ImportReport::default();
        let mut chunk = Vec::with_capacity(COPY_CHUNK);
        for entry in entries {
            report.choices.count(&entry.choices);
            chunk.push(entry);
            if chunk.len() == COPY_CHUNK {
                report.read += store::roster::copy_into_staging(&mut tx, &chunk).await?;
                chunk.clear();
                progress(report.read);
            }
        }
        report.read += store::roster::copy_into_staging(&mut tx, &chunk).await?;
        progress(report.read);
        let counts = store::roster::insert_staged_members(&mut tx, list.id).await?;
        report.added = counts.added;
        report.roles_given = counts.staff;
        report.dry_run = dry_run;
        if !quiet && !dry_run && counts.added > 0 {
            // each new member is told, with how to leave, in the same transaction
            for id in store::roster::list_staged_added(&mut tx, list.id, started).await? {
                if let Some(m) = store::members::find_member_by_id_for_update(&mut *tx, id).await? {
                    self.enqueue_welcome(&mut tx, &list, &m).await?;
                }
            }
        }
        report.already_members = counts.already;
        let left = store::roster::list_staged_left(&mut tx, list.id).await?;
        report.left = left.len() as u64;
        if dry_run {
            tx.rollback().await?;
            return Ok(report);
        }
        tx.commit().await?;
        if !quiet && counts.added > 0 {
            self.wakeups.outbound();
        }
        if invite && !left.is_empty() {
            let addresses: Vec<EmailAddress> = left
                .iter()
                .filter_map(|a| EmailAddress::parse(a).ok())
                .collect();
            let outcomes = self
                .add_members(
                    &ListRef::Address(list.address.clone()),
                    &addresses,
                    Role::Member,
                    super::members::AddHow::Invite,
                )
                .await?;
            report.invited = outcomes
                .iter()
                .filter(|(_, o)| *o == AddOutcome::Invited)
                .count() as u64;
        }
        Ok(report)
    }

    /// Every subscribed member of a list with their consent record, for export.
    pub async fn export_members(
        &self,
        list: &ListRef,
    ) -> Result<Vec<crate::domain::Member>, AppError> {
        let list = self.get_list(list).await?;
        Ok(store::members::list_members(
            &self.db,
            list.id,
            Some(Role::Member),
            Some(crate::domain::MemberStatus::Subscribed),
        )
        .await?)
    }
}
