//! A database per test, cloned from a migrated template.
//!
//! The first test of a process that asks for a template migrates it (all the schemas it
//! lists) under an advisory lock, so concurrent test binaries never migrate it twice; every
//! test then gets `CREATE DATABASE … TEMPLATE …`, which takes milliseconds and isolates it
//! completely. The template's name carries a fingerprint of the migration versions, so adding
//! a migration makes a fresh template. (Editing an applied migration in place does not: add a
//! new one, as in production.) A test database is dropped when its handle is dropped.

use std::{collections::HashMap, sync::Mutex};

use diesel::migration::MigrationSource;
use diesel::{sql_query, sql_types::BigInt};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::EmbeddedMigrations;

use crate::{DbError, Result, advisory_key, url_with_database};

/// The schemas (and their migrations) a template holds.
#[derive(Clone, Copy)]
pub struct Template {
    /// A short name, e.g. `fyle_sync` or `e2e`.
    pub name: &'static str,
    pub schemas: &'static [(&'static str, &'static EmbeddedMigrations)],
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let schemas: Vec<&str> = self.schemas.iter().map(|(s, _)| *s).collect();
        f.debug_struct("Template")
            .field("name", &self.name)
            .field("schemas", &schemas)
            .finish()
    }
}

impl Template {
    fn database_name(&self) -> String {
        // The platform migrations run into every schema too, so they are part of the name.
        let mut versions = String::from("platform:");
        for m in MigrationSource::<diesel::pg::Pg>::migrations(&crate::PLATFORM_MIGRATIONS)
            .unwrap_or_default()
        {
            versions.push_str(&m.name().to_string());
        }
        for (schema, migrations) in self.schemas {
            versions.push_str(schema);
            let list: Vec<_> =
                MigrationSource::<diesel::pg::Pg>::migrations(*migrations).unwrap_or_default();
            for m in list {
                versions.push_str(&m.name().to_string());
            }
        }
        format!(
            "tmpl_{}_{:x}",
            self.name,
            advisory_key(&versions) as u64 & 0xffff_ffff
        )
    }
}

/// A throwaway database for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The test database's URL (without a schema: give each service its schema via config).
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Clones a fresh database from `template`, creating the template first if needed.
    ///
    /// `admin_url` is any URL on the server with the right to create databases (the local
    /// stack's `DATABASE_URL`).
    pub async fn create(admin_url: &str, template: &Template) -> Result<Self> {
        let template_db = template.database_name();
        ensure_template(admin_url, &template_db, template).await?;
        let name = format!("test_{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut admin = AsyncPgConnection::establish(admin_url).await?;
        // Cloning needs the template to have no other sessions; the lock keeps a concurrent
        // migration of the same template away while we copy it.
        let key = advisory_key(&template_db);
        sql_query("SELECT pg_advisory_lock($1)")
            .bind::<BigInt, _>(key)
            .execute(&mut admin)
            .await?;
        let created = retry_while_in_use(
            &mut admin,
            &format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template_db}\""),
        )
        .await;
        sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<BigInt, _>(key)
            .execute(&mut admin)
            .await?;
        created?;
        Ok(Self {
            url: url_with_database(admin_url, &name)?,
            name,
            admin_url: admin_url.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a private one on a plain thread.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = AsyncPgConnection::establish(&admin_url).await {
                    let _ = sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

static READY_TEMPLATES: Mutex<Option<HashMap<String, ()>>> = Mutex::new(None);

async fn ensure_template(admin_url: &str, template_db: &str, template: &Template) -> Result<()> {
    let known = READY_TEMPLATES
        .lock()
        .map(|guard| guard.as_ref().is_some_and(|m| m.contains_key(template_db)))
        .unwrap_or(false);
    if known {
        return Ok(());
    }
    let mut admin = AsyncPgConnection::establish(admin_url).await?;
    let key = advisory_key(template_db);
    sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(key)
        .execute(&mut admin)
        .await?;
    let outcome = build_template(&mut admin, admin_url, template_db, template).await;
    sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(key)
        .execute(&mut admin)
        .await?;
    outcome?;
    if let Ok(mut guard) = READY_TEMPLATES.lock() {
        guard
            .get_or_insert_with(HashMap::new)
            .insert(template_db.to_owned(), ());
    }
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

async fn build_template(
    admin: &mut AsyncPgConnection,
    admin_url: &str,
    template_db: &str,
    template: &Template,
) -> Result<()> {
    let exists: Exists =
        sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(template_db)
            .get_result(admin)
            .await?;
    if exists.exists {
        return Ok(());
    }
    // Build under a temporary name and rename at the end, so a half-migrated template (a crash
    // mid-way) is never cloned.
    let building = format!("{template_db}_building");
    sql_query(format!(
        "DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"
    ))
    .execute(admin)
    .await?;
    sql_query(format!("CREATE DATABASE \"{building}\""))
        .execute(admin)
        .await?;
    let url = url_with_database(admin_url, &building)?;
    for (schema, migrations) in template.schemas {
        crate::migrate(&url, schema, migrations)
            .await
            .map_err(|e| DbError::Migration(format!("{schema}: {e}")))?;
    }
    retry_while_in_use(
        admin,
        &format!("ALTER DATABASE \"{building}\" RENAME TO \"{template_db}\""),
    )
    .await?;
    Ok(())
}

/// Runs a statement that needs a database without sessions, retrying briefly while sessions
/// that were just closed on our side are still ending on the server's.
async fn retry_while_in_use(
    admin: &mut AsyncPgConnection,
    statement: &str,
) -> Result<(), diesel::result::Error> {
    let mut attempts = 0;
    loop {
        match sql_query(statement).execute(admin).await {
            Err(e)
                if attempts < 50 && e.to_string().contains("is being accessed by other users") =>
            {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other.map(drop),
        }
    }
}
