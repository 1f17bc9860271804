//! `auth.AuthService` over gRPC: the same operations as HTTP, translated.

use std::sync::Arc;

use record_proto::auth as pb;
use record_proto::auth::auth_service_server::AuthService;
use service_common::metrics::Metrics;
use service_common::IdentityGate;
use tonic::{Request, Response, Status};

use crate::accounts::{Accounts, User};

pub struct AuthGrpc {
    pub accounts: Arc<Accounts>,
    pub gate: Arc<IdentityGate>,
    pub metrics: Arc<Metrics>,
}

fn user(user: User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        email: user.email,
        created_at: user
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        self.metrics
            .track_grpc("/auth.AuthService/Register", async {
                let body = request.into_inner();
                let created = self.accounts.register(&body.email, &body.password).await?;
                Ok(Response::new(pb::RegisterResponse {
                    user: Some(user(created)),
                }))
            })
            .await
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        self.metrics
            .track_grpc("/auth.AuthService/Login", async {
                let body = request.into_inner();
                let issued = self.accounts.login(&body.email, &body.password).await?;
                Ok(Response::new(pb::LoginResponse {
                    token: issued.token,
                    expires_in: issued.expires_in,
                    token_type: "Bearer".into(),
                }))
            })
            .await
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        self.metrics
            .track_grpc("/auth.AuthService/Logout", async {
                let caller = self.gate.from_grpc(&request)?;
                self.accounts.logout(&caller).await?;
                Ok(Response::new(pb::LogoutResponse {}))
            })
            .await
    }

    async fn me(&self, request: Request<pb::MeRequest>) -> Result<Response<pb::User>, Status> {
        self.metrics
            .track_grpc("/auth.AuthService/Me", async {
                let caller = self.gate.from_grpc(&request)?;
                Ok(Response::new(user(self.accounts.me(&caller).await?)))
            })
            .await
    }
}
