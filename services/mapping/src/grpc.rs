//! The `MappingService` gRPC API.
//!
//! Errors map to gRPC codes in one place ([`status`]): a refused settings change is
//! `INVALID_ARGUMENT` with a message naming the field, and nothing is saved. Mappings and
//! mapping errors are [`crate::operator`]; import settings are [`crate::store`] around the
//! rules of [`crate::import_settings`].

use attrsync_kafka::relay::RelayHandle;
use attrsync_proto::v1::{
    CreateWorkspaceRequest, DeleteMappingRequest, DeleteMappingResponse, GetWorkspaceRequest,
    ImportSettings, ListMappingErrorsRequest, ListMappingErrorsResponse,
    ListMappingSettingsRequest, ListMappingSettingsResponse, ListMappingsRequest,
    ListMappingsResponse, ListWorkspacesRequest, ListWorkspacesResponse, Mapping, MappingError,
    ReportMappingErrorRequest, UpdateImportSettingsRequest, UpdateWebhookFlagsRequest,
    UpsertMappingRequest, WorkspaceSnapshot, mapping_service_server::MappingService,
};
use tonic::{Request, Response, Status};

use crate::{
    operator,
    store::{Store, StoreError},
};

#[derive(Debug, Clone)]
pub(crate) struct MappingApi {
    pub(crate) store: Store,
    pub(crate) relay: RelayHandle,
}

fn status(error: StoreError) -> Status {
    match error {
        StoreError::NotFound(_) => Status::not_found(error.to_string()),
        StoreError::OrgTaken(_) => Status::already_exists(error.to_string()),
        StoreError::Invalid(_) => Status::invalid_argument(error.to_string()),
        StoreError::MappingNotFound(_) => Status::not_found(error.to_string()),
        StoreError::UnknownAttribute(_) => Status::failed_precondition(error.to_string()),
        StoreError::Db(e) => {
            tracing::error!(error = %e, "database error");
            Status::unavailable("database unavailable; retry")
        }
    }
}

#[tonic::async_trait]
impl MappingService for MappingApi {
    async fn create_workspace(
        &self,
        request: Request<CreateWorkspaceRequest>,
    ) -> Result<Response<WorkspaceSnapshot>, Status> {
        let snapshot = self
            .store
            .create_workspace(request.get_ref())
            .await
            .map_err(status)?;
        self.relay.wake();
        tracing::info!(
            workspace_id = snapshot.workspace.as_ref().map(|w| w.id),
            "workspace created"
        );
        Ok(Response::new(snapshot))
    }

    async fn get_workspace(
        &self,
        request: Request<GetWorkspaceRequest>,
    ) -> Result<Response<WorkspaceSnapshot>, Status> {
        self.store
            .get(request.get_ref().workspace_id)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn list_workspaces(
        &self,
        request: Request<ListWorkspacesRequest>,
    ) -> Result<Response<ListWorkspacesResponse>, Status> {
        let (workspaces, next_after_id) =
            self.store.list(request.get_ref()).await.map_err(status)?;
        Ok(Response::new(ListWorkspacesResponse {
            workspaces,
            next_after_id,
        }))
    }

    async fn update_webhook_flags(
        &self,
        request: Request<UpdateWebhookFlagsRequest>,
    ) -> Result<Response<WorkspaceSnapshot>, Status> {
        let snapshot = self
            .store
            .update_webhook_flags(request.get_ref())
            .await
            .map_err(status)?;
        self.relay.wake();
        Ok(Response::new(snapshot))
    }

    async fn get_import_settings(
        &self,
        request: Request<GetWorkspaceRequest>,
    ) -> Result<Response<ImportSettings>, Status> {
        let snapshot = self
            .store
            .get(request.get_ref().workspace_id)
            .await
            .map_err(status)?;
        let settings = snapshot
            .settings
            .and_then(|s| s.import_settings)
            .unwrap_or_default();
        Ok(Response::new(settings))
    }

    async fn update_import_settings(
        &self,
        request: Request<UpdateImportSettingsRequest>,
    ) -> Result<Response<WorkspaceSnapshot>, Status> {
        let snapshot = self
            .store
            .update_import_settings(request.get_ref())
            .await
            .map_err(status)?;
        self.relay.wake();
        Ok(Response::new(snapshot))
    }

    async fn list_mapping_settings(
        &self,
        request: Request<ListMappingSettingsRequest>,
    ) -> Result<Response<ListMappingSettingsResponse>, Status> {
        let mapping_settings = self
            .store
            .list_mapping_settings(request.get_ref().workspace_id)
            .await
            .map_err(status)?;
        Ok(Response::new(ListMappingSettingsResponse {
            mapping_settings,
        }))
    }

    async fn list_mappings(
        &self,
        request: Request<ListMappingsRequest>,
    ) -> Result<Response<ListMappingsResponse>, Status> {
        let (mappings, next_after_id) = operator::list(self.store.pool(), request.get_ref())
            .await
            .map_err(status)?;
        Ok(Response::new(ListMappingsResponse {
            mappings,
            next_after_id,
        }))
    }

    async fn upsert_mapping(
        &self,
        request: Request<UpsertMappingRequest>,
    ) -> Result<Response<Mapping>, Status> {
        let mapping = operator::upsert(self.store.pool(), request.get_ref())
            .await
            .map_err(status)?;
        tracing::info!(
            workspace_id = mapping.workspace_id,
            mapping_id = mapping.id,
            "mapping upserted by an operator"
        );
        Ok(Response::new(mapping))
    }

    async fn delete_mapping(
        &self,
        request: Request<DeleteMappingRequest>,
    ) -> Result<Response<DeleteMappingResponse>, Status> {
        let r = request.get_ref();
        operator::delete(self.store.pool(), r.workspace_id, r.mapping_id)
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteMappingResponse {}))
    }

    async fn list_mapping_errors(
        &self,
        request: Request<ListMappingErrorsRequest>,
    ) -> Result<Response<ListMappingErrorsResponse>, Status> {
        let (errors, next_after_id) = operator::list_errors(self.store.pool(), request.get_ref())
            .await
            .map_err(status)?;
        Ok(Response::new(ListMappingErrorsResponse {
            errors,
            next_after_id,
        }))
    }

    async fn report_mapping_error(
        &self,
        request: Request<ReportMappingErrorRequest>,
    ) -> Result<Response<MappingError>, Status> {
        operator::report_error(self.store.pool(), request.get_ref())
            .await
            .map(Response::new)
            .map_err(status)
    }
}
