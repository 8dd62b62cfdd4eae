//! Bucket operations: CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation, and
//! GetBucketVersioning (never enabled: no status, as S3 answers for such a bucket).

use super::StrataS3;
use super::error::IntoS3;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

impl StrataS3 {
    pub(super) async fn do_create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let name = req.input.bucket;
        self.tier.create_bucket(&name).await.s3()?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{name}")) }))
    }

    pub(super) async fn do_head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.tier.bucket(&req.input.bucket).await.s3()?;
        Ok(S3Response::new(HeadBucketOutput { bucket_region: Some(self.region.clone()), ..Default::default() }))
    }

    pub(super) async fn do_delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.tier.delete_bucket(&req.input.bucket).await.s3()?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    pub(super) async fn do_get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.tier.bucket(&req.input.bucket).await.s3()?;
        // us-east-1 is reported as an empty constraint, as S3 does.
        let loc = (self.region != "us-east-1").then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput { location_constraint: loc }))
    }

    pub(super) async fn do_get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.tier.bucket(&req.input.bucket).await.s3()?;
        Ok(S3Response::new(GetBucketVersioningOutput::default()))
    }
}
