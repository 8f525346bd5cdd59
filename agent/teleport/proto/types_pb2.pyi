import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from agent.teleport.proto import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignatureAlgorithmSuite(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNATURE_ALGORITHM_SUITE_UNSPECIFIED: _ClassVar[SignatureAlgorithmSuite]
    SIGNATURE_ALGORITHM_SUITE_LEGACY: _ClassVar[SignatureAlgorithmSuite]
    SIGNATURE_ALGORITHM_SUITE_BALANCED_V1: _ClassVar[SignatureAlgorithmSuite]
    SIGNATURE_ALGORITHM_SUITE_FIPS_V1: _ClassVar[SignatureAlgorithmSuite]
    SIGNATURE_ALGORITHM_SUITE_HSM_V1: _ClassVar[SignatureAlgorithmSuite]
SIGNATURE_ALGORITHM_SUITE_UNSPECIFIED: SignatureAlgorithmSuite
SIGNATURE_ALGORITHM_SUITE_LEGACY: SignatureAlgorithmSuite
SIGNATURE_ALGORITHM_SUITE_BALANCED_V1: SignatureAlgorithmSuite
SIGNATURE_ALGORITHM_SUITE_FIPS_V1: SignatureAlgorithmSuite
SIGNATURE_ALGORITHM_SUITE_HSM_V1: SignatureAlgorithmSuite

class Metadata(_message.Message):
    __slots__ = ("Name", "Namespace", "Description", "Labels", "Expires", "Revision")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    Name: str
    Namespace: str
    Description: str
    Labels: _containers.ScalarMap[str, str]
    Expires: _timestamp_pb2.Timestamp
    Revision: str
    def __init__(self, Name: _Optional[str] = ..., Namespace: _Optional[str] = ..., Description: _Optional[str] = ..., Labels: _Optional[_Mapping[str, str]] = ..., Expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., Revision: _Optional[str] = ...) -> None: ...

class RoleV6(_message.Message):
    __slots__ = ("Kind", "SubKind", "Version", "Metadata", "Spec")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBKIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    Kind: str
    SubKind: str
    Version: str
    Metadata: Metadata
    Spec: RoleSpecV6
    def __init__(self, Kind: _Optional[str] = ..., SubKind: _Optional[str] = ..., Version: _Optional[str] = ..., Metadata: _Optional[_Union[Metadata, _Mapping]] = ..., Spec: _Optional[_Union[RoleSpecV6, _Mapping]] = ...) -> None: ...

class RoleSpecV6(_message.Message):
    __slots__ = ("Options", "Allow", "Deny")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    DENY_FIELD_NUMBER: _ClassVar[int]
    Options: RoleOptions
    Allow: RoleConditions
    Deny: RoleConditions
    def __init__(self, Options: _Optional[_Union[RoleOptions, _Mapping]] = ..., Allow: _Optional[_Union[RoleConditions, _Mapping]] = ..., Deny: _Optional[_Union[RoleConditions, _Mapping]] = ...) -> None: ...

class RoleOptions(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoleConditions(_message.Message):
    __slots__ = ("KubeGroups", "KubeUsers", "KubernetesLabels", "Impersonate")
    KUBEGROUPS_FIELD_NUMBER: _ClassVar[int]
    KUBEUSERS_FIELD_NUMBER: _ClassVar[int]
    KUBERNETESLABELS_FIELD_NUMBER: _ClassVar[int]
    IMPERSONATE_FIELD_NUMBER: _ClassVar[int]
    KubeGroups: _containers.RepeatedScalarFieldContainer[str]
    KubeUsers: _containers.RepeatedScalarFieldContainer[str]
    KubernetesLabels: _wrappers_pb2.LabelValues
    Impersonate: ImpersonateConditions
    def __init__(self, KubeGroups: _Optional[_Iterable[str]] = ..., KubeUsers: _Optional[_Iterable[str]] = ..., KubernetesLabels: _Optional[_Union[_wrappers_pb2.LabelValues, _Mapping]] = ..., Impersonate: _Optional[_Union[ImpersonateConditions, _Mapping]] = ...) -> None: ...

class ImpersonateConditions(_message.Message):
    __slots__ = ("Users", "Roles")
    USERS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    Users: _containers.RepeatedScalarFieldContainer[str]
    Roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, Users: _Optional[_Iterable[str]] = ..., Roles: _Optional[_Iterable[str]] = ...) -> None: ...

class KubernetesServerV3(_message.Message):
    __slots__ = ("Kind", "SubKind", "Version", "Metadata", "Spec")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBKIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    Kind: str
    SubKind: str
    Version: str
    Metadata: Metadata
    Spec: KubernetesServerSpecV3
    def __init__(self, Kind: _Optional[str] = ..., SubKind: _Optional[str] = ..., Version: _Optional[str] = ..., Metadata: _Optional[_Union[Metadata, _Mapping]] = ..., Spec: _Optional[_Union[KubernetesServerSpecV3, _Mapping]] = ...) -> None: ...

class KubernetesServerSpecV3(_message.Message):
    __slots__ = ("Version", "Hostname", "HostID", "Cluster")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    HOSTID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    Version: str
    Hostname: str
    HostID: str
    Cluster: KubernetesClusterV3
    def __init__(self, Version: _Optional[str] = ..., Hostname: _Optional[str] = ..., HostID: _Optional[str] = ..., Cluster: _Optional[_Union[KubernetesClusterV3, _Mapping]] = ...) -> None: ...

class KubernetesClusterV3(_message.Message):
    __slots__ = ("Kind", "SubKind", "Version", "Metadata", "Spec")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBKIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    Kind: str
    SubKind: str
    Version: str
    Metadata: Metadata
    Spec: KubernetesClusterSpecV3
    def __init__(self, Kind: _Optional[str] = ..., SubKind: _Optional[str] = ..., Version: _Optional[str] = ..., Metadata: _Optional[_Union[Metadata, _Mapping]] = ..., Spec: _Optional[_Union[KubernetesClusterSpecV3, _Mapping]] = ...) -> None: ...

class KubernetesClusterSpecV3(_message.Message):
    __slots__ = ("DynamicLabels",)
    class DynamicLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: CommandLabelV2
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[CommandLabelV2, _Mapping]] = ...) -> None: ...
    DYNAMICLABELS_FIELD_NUMBER: _ClassVar[int]
    DynamicLabels: _containers.MessageMap[str, CommandLabelV2]
    def __init__(self, DynamicLabels: _Optional[_Mapping[str, CommandLabelV2]] = ...) -> None: ...

class CommandLabelV2(_message.Message):
    __slots__ = ("Period", "Command", "Result")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    Period: int
    Command: _containers.RepeatedScalarFieldContainer[str]
    Result: str
    def __init__(self, Period: _Optional[int] = ..., Command: _Optional[_Iterable[str]] = ..., Result: _Optional[str] = ...) -> None: ...

class RegisterUsingTokenRequest(_message.Message):
    __slots__ = ("HostID", "NodeName", "Role", "Token", "PublicTLSKey", "PublicSSHKey", "IDToken", "Expires")
    HOSTID_FIELD_NUMBER: _ClassVar[int]
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PUBLICTLSKEY_FIELD_NUMBER: _ClassVar[int]
    PUBLICSSHKEY_FIELD_NUMBER: _ClassVar[int]
    IDTOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    HostID: str
    NodeName: str
    Role: str
    Token: str
    PublicTLSKey: bytes
    PublicSSHKey: bytes
    IDToken: str
    Expires: _timestamp_pb2.Timestamp
    def __init__(self, HostID: _Optional[str] = ..., NodeName: _Optional[str] = ..., Role: _Optional[str] = ..., Token: _Optional[str] = ..., PublicTLSKey: _Optional[bytes] = ..., PublicSSHKey: _Optional[bytes] = ..., IDToken: _Optional[str] = ..., Expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
