"""Signature Version 4 against AWS's published examples; ListObjectsV2 and error replies."""

from __future__ import annotations

import pytest

from cascade.contract import s3
from cascade.contract.s3 import Credentials, ListPage, ObjectInfo, S3Error

# "Signature Calculations for the Authorization Header: Transferring Payload in a Single
# Chunk" (Amazon S3 API reference, Authenticating Requests: AWS Signature Version 4).
AWS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
HOST = "examplebucket.s3.amazonaws.com"
DATE = "20130524T000000Z"


def signature(headers: dict[str, str]) -> str:
    return headers["authorization"].rsplit("Signature=", 1)[1]


def test_get_object_example() -> None:
    headers = s3.sign(
        method="GET",
        host=HOST,
        path="/test.txt",
        query={},
        headers={"Range": "bytes=0-9"},
        payload_sha256=s3.EMPTY_SHA256,
        credentials=AWS,
        region="us-east-1",
        date=DATE,
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_put_object_example() -> None:
    body = b"Welcome to Amazon S3."
    import hashlib

    headers = s3.sign(
        method="PUT",
        host=HOST,
        path="/test$file.text",
        query={},
        headers={
            "Date": "Fri, 24 May 2013 00:00:00 GMT",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
        },
        payload_sha256=hashlib.sha256(body).hexdigest(),
        credentials=AWS,
        region="us-east-1",
        date=DATE,
    )
    assert signature(headers) == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"


def test_list_objects_example() -> None:
    headers = s3.sign(
        method="GET",
        host=HOST,
        path="/",
        query={"max-keys": "2", "prefix": "J"},
        headers={},
        payload_sha256=s3.EMPTY_SHA256,
        credentials=AWS,
        region="us-east-1",
        date=DATE,
    )
    assert signature(headers) == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"


def test_canonical_query_encodes_names_values_and_slashes() -> None:
    assert (
        s3.canonical_query({"prefix": "a/b c", "list-type": "2"}) == "list-type=2&prefix=a%2Fb%20c"
    )
    assert s3.canonical_uri("/bucket/a b/c~d") == "/bucket/a%20b/c~d"


def test_amz_date() -> None:
    assert s3.amz_date(1369353600) == "20130524T000000Z"


LIST = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>cascade</Name><Prefix>r/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
  <IsTruncated>true</IsTruncated><NextContinuationToken>tok=</NextContinuationToken>
  <Contents><Key>r/a</Key><Size>12</Size></Contents>
  <Contents><Key>r/b</Key><Size>7</Size></Contents>
  <CommonPrefixes><Prefix>r/c/</Prefix></CommonPrefixes>
</ListBucketResult>"""


def test_list_page() -> None:
    assert s3.parse_list_page(LIST) == ListPage(
        (ObjectInfo("r/a", 12), ObjectInfo("r/b", 7)), ("r/c/",), "tok="
    )
    last = LIST.replace(b"<IsTruncated>true", b"<IsTruncated>false")
    assert s3.parse_list_page(last).next_token is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not xml", "not XML"),
        (b"<Error/>", "expected ListBucketResult"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><ListBucketResult/>', "DTD"),
        (
            b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
            "no NextContinuationToken",
        ),
    ],
)
def test_list_page_refuses(body: bytes, message: str) -> None:
    with pytest.raises(S3Error, match=message):
        s3.parse_list_page(body)


def test_error_reply() -> None:
    err = s3.parse_error(
        404, b"<Error><Code>NoSuchBucket</Code><Message>no bucket</Message></Error>"
    )
    assert (err.status, err.code, str(err)) == (
        404,
        "NoSuchBucket",
        "HTTP 404 NoSuchBucket: no bucket",
    )
    assert str(s3.parse_error(503, b"")) == "HTTP 503"


def test_list_query_sends_only_the_fields_given() -> None:
    assert s3.list_query("demo/") == {"list-type": "2", "prefix": "demo/"}
    assert s3.list_query("demo/", start_after="demo/a", token="t", delimiter="/") == {
        "list-type": "2",
        "prefix": "demo/",
        "start-after": "demo/a",
        "continuation-token": "t",
        "delimiter": "/",
    }
