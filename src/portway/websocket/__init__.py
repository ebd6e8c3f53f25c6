"""WebSocket APIs: their definitions (native YAML or SAM/CloudFormation), route selection and Lambda events.

The cores here do no I/O: :mod:`.model` (what a definition says), :mod:`.definition` (the native form),
:mod:`.cfn` (``AWS::ApiGatewayV2::*`` resources in a SAM/CloudFormation template), :mod:`.selection`
(``routeSelectionExpression`` against a message) and :mod:`.events` (the events API Gateway sends a Lambda).
"""
