"""Local stand-ins for the AWS services moto does not run: API Gateway's REST proxy."""
