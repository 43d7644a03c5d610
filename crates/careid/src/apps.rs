//! `careid client ...`: the RA Manager registers, lists and disables the clinical
//! applications that sign their users in through careid's OpenID Connect provider.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::client::ClientFlags;

#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    flags: ClientFlags,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Registers an application. A confidential one's secret is printed once.
    Register {
        /// The OAuth client_id: 3 to 64 of a-z, 0-9 and '-'.
        client_id: String,
        /// The application's name, as its users see it on the sign-in page.
        #[arg(long)]
        name: String,
        /// confidential (a server that keeps a secret) or public (PKCE only).
        #[arg(long, default_value = "confidential")]
        kind: String,
        /// An exact redirect URI (repeat for several).
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// Where careid posts back-channel logout tokens when a session ends.
        #[arg(long)]
        backchannel_logout_uri: Option<String>,
    },
    /// Lists the registered applications.
    List,
    /// Disables an application: it signs nobody in, and its tokens stop being active.
    Disable { client_id: String },
}

pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let client = args.flags.client()?;
    let value = match args.command {
        ClientCommand::Register { client_id, name, kind, redirect_uris, backchannel_logout_uri } => {
            let body = json!({
                "client_id": client_id,
                "name": name,
                "kind": kind,
                "redirect_uris": redirect_uris,
                "backchannel_logout_uri": backchannel_logout_uri,
            });
            client.post("/api/v1/clients", body).await?
        }
        ClientCommand::List => client.get("/api/v1/clients").await?,
        ClientCommand::Disable { client_id } => {
            client.delete(&format!("/api/v1/clients/{client_id}")).await?;
            json!({ "disabled": client_id })
        }
    };
    args.flags.print(&value)
}
