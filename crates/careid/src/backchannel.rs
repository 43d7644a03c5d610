//! OpenID Connect back-channel logout over HTTP: the `LogoutSender` that posts a signed logout
//! token to each application whose session ended, and the loop that delivers them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use careid_domain::oidc::PendingLogout;
use careid_domain::ports::{Clock, LogoutSender};
use careid_http::Oidc;
use careid_service::{RequestContext, Service};

/// Posts `logout_token=<JWT>` to the application's back-channel logout URI.
#[derive(Debug)]
pub struct HttpLogoutSender {
    oidc: Arc<Oidc>,
    http: reqwest::Client,
}

impl HttpLogoutSender {
    pub fn new(oidc: Arc<Oidc>) -> anyhow::Result<HttpLogoutSender> {
        // The specification's own advice: do not follow redirects, and do not wait long.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(HttpLogoutSender { oidc, http })
    }
}

#[async_trait]
impl LogoutSender for HttpLogoutSender {
    async fn send(&self, logout: &PendingLogout) -> Result<(), String> {
        let mut jti = [0u8; 16];
        rand::fill(&mut jti);
        let token = self.oidc.logout_token(logout, crate::SystemClock.now(), &hex::encode(jti))?;
        let response = self
            .http
            .post(logout.uri.as_str())
            .form(&[("logout_token", token)])
            .send()
            .await
            .map_err(|e| format!("posting to {}: {}", logout.uri, e.without_url()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("{} answered {}", logout.uri, response.status()))
        }
    }
}

/// Delivers back-channel logouts for as long as the server runs: within a second of a session
/// ending, its applications hear of it.
pub async fn deliver_forever(service: Service, sender: HttpLogoutSender) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctx = RequestContext::new("backchannel-logout");
    loop {
        tick.tick().await;
        if let Err(error) = service.deliver_logouts(&ctx, &sender).await {
            tracing::warn!(%error, "back-channel logout delivery failed this round");
        }
    }
}
