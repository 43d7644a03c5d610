//! `careid sessions ...`: a holder lists their own live sessions (every workstation and
//! application sign-in their person has open) and ends any of them.

use clap::{Args, Subcommand};

use crate::client::ClientFlags;

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    flags: ClientFlags,
    #[command(subcommand)]
    command: Option<SessionsCommand>,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// Lists your live sessions (the default).
    List,
    /// Ends one of your sessions: the workstation it is on is signed out within seconds.
    End {
        /// The session_id, as `careid sessions` lists it.
        id: String,
    },
}

pub async fn run(args: SessionsArgs) -> anyhow::Result<()> {
    let client = args.flags.client()?;
    match args.command.unwrap_or(SessionsCommand::List) {
        SessionsCommand::List => {
            let sessions = client.get("/api/v1/sessions").await?;
            args.flags.print(&sessions)
        }
        SessionsCommand::End { id } => {
            let path = format!("/api/v1/sessions/{}", crate::ra::encode(&id));
            client.delete(&path).await?;
            if args.flags.json {
                args.flags.print(&serde_json::json!({ "ended": id }))
            } else {
                println!("session {id} ended");
                Ok(())
            }
        }
    }
}
